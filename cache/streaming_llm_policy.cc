#include "cache/streaming_llm_policy.h"

#include <absl/strings/str_cat.h>

#include <algorithm>

#include "cache/policy_params.h"

namespace kvserve {

absl::StatusOr<StreamingLlmPolicy::Params> StreamingLlmPolicy::Resolve(
    const CacheSpec& spec, const PolicyContext& /*context*/) {
  PolicyParams reader(spec, "streaming_llm");
  if (auto s = reader.CheckKnown({"sink_tokens", "window_tokens"}); !s.ok()) return s;
  Params p;
  auto sinks = reader.Int("sink_tokens", 4);
  if (!sinks.ok()) return sinks.status();
  p.sink_tokens = *sinks;
  if (auto s = CheckAtLeast(reader.Field("sink_tokens"), p.sink_tokens, 0); !s.ok()) return s;
  // §0.5 item 6: the budget must leave room for at least one recent token beside the sinks.
  if (auto s = CheckBudget(spec, p.sink_tokens + 1,
                           absl::StrCat("sink_tokens ", p.sink_tokens, " + 1 recent token"));
      !s.ok()) {
    return s;
  }
  auto window = reader.Int("window_tokens", spec.budget_tokens - p.sink_tokens);
  if (!window.ok()) return window.status();
  p.window_tokens = *window;
  if (p.sink_tokens + p.window_tokens != spec.budget_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        reader.Field("window_tokens"), " must equal cache.budget_tokens - sink_tokens = ",
        spec.budget_tokens - p.sink_tokens, ", got ", p.window_tokens));
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
