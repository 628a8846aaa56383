#include "cache/streaming_llm_policy.h"

#include <absl/strings/str_cat.h>

#include <algorithm>

#include "cache/policy_params.h"

namespace kvserve {

absl::StatusOr<StreamingLlmPolicy::Params> StreamingLlmPolicy::Resolve(
    const CacheSpec& spec, const PolicyContext& /*context*/) {
  auto reader = PolicyParams::Read(spec, "streaming_llm", {"sink_tokens", "window_tokens"});
  if (!reader.ok()) return reader.status();
  const int64_t budget = reader->budget();
  Params p;
  auto sinks = reader->Int("sink_tokens", 4, 0);
  if (!sinks.ok()) return sinks.status();
  p.sink_tokens = *sinks;
  // §0.5 item 6: the budget must leave room for at least one recent token beside the sinks.
  if (auto s = reader->CheckBudget(
          p.sink_tokens + 1, absl::StrCat("sink_tokens ", p.sink_tokens, " + 1 recent token"));
      !s.ok()) {
    return s;
  }
  auto window = reader->Int("window_tokens", budget - p.sink_tokens);
  if (!window.ok()) return window.status();
  p.window_tokens = *window;
  if (p.sink_tokens + p.window_tokens != budget) {
    return FieldError(reader->Field("window_tokens"),
                      absl::StrCat("must equal cache.budget_tokens - sink_tokens = ",
                                   budget - p.sink_tokens, ", got ", p.window_tokens));
  }
  return p;
}

PolicyDescription StreamingLlmPolicy::Describe() {
  return {CachePolicyKind::kStreamingLlm,
          true,
          "attention sinks plus a sliding window of recent tokens; positions re-indexed within "
          "the cache (StreamingLLM)",
          {{"sink_tokens", "first tokens of the stream kept for good (attention sinks), >= 0", "4"},
           {"window_tokens", "most recent tokens kept; sink_tokens + window_tokens = budget",
            "budget - sink_tokens"}}};
}

void StreamingLlmPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t length = cache.length(step.layer);
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  if (length <= budget()) return;
  // Every head keeps the same slots: the sinks are the oldest slots and the window the newest,
  // because the cache is only ever cut this way and so stays in temporal order.
  const auto options = at::TensorOptions().dtype(at::kLong).device(cache.shape().device);
  auto slots = at::cat({at::arange(0, params_.sink_tokens, options),
                        at::arange(length - params_.window_tokens, length, options)});
  cache.Keep(step.layer, slots.unsqueeze(0).expand({cache.shape().num_kv_heads, -1}));
  if (step.layer == 0) {
    stats_.evicted_tokens += length - budget();
    stats_.compression_events += 1;
  }
}

}  // namespace kvserve
