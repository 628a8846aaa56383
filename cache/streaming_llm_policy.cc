#include "cache/streaming_llm_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

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

int64_t& StreamingLlmPolicy::RingHead(int64_t layer) {
  if (static_cast<int64_t>(ring_heads_.size()) <= layer) {
    ring_heads_.resize(layer + 1, params_.sink_tokens);
  }
  return ring_heads_[layer];
}

void StreamingLlmPolicy::AdvanceRing(int64_t& head) const {
  head = params_.sink_tokens + (head - params_.sink_tokens + 1) % params_.window_tokens;
}

RingLayout StreamingLlmPolicy::ring_layout(int64_t layer) const {
  const int64_t head =
      layer < static_cast<int64_t>(ring_heads_.size()) ? ring_heads_[layer] : params_.sink_tokens;
  return {params_.sink_tokens, params_.window_tokens, head, {}};
}

void StreamingLlmPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t layer = step.layer, length = cache.length(layer);
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  if (length <= budget()) return;
  const int64_t sinks = params_.sink_tokens, window = params_.window_tokens;
  const auto options = at::TensorOptions().dtype(at::kLong).device(cache.shape().device);
  int64_t& head = RingHead(layer);
  if (step.new_tokens == 1 && length == budget() + 1) {
    // The new token (last slot) moves into the oldest window token's slot.
    auto slots = at::arange(length - 1, options);
    slots[head] = length - 1;
    cache.Keep(layer, slots.unsqueeze(0).expand({cache.shape().num_kv_heads, -1}));
    AdvanceRing(head);
    CountEviction(layer, 1);
    return;
  }
  // Chunks precede every decode step, so the cache is still in temporal order here.
  TORCH_CHECK(head == sinks, "StreamingLLM: a prefill chunk after decode steps");
  auto slots =
      at::cat({at::arange(0, sinks, options), at::arange(length - window, length, options)});
  cache.Keep(layer, slots.unsqueeze(0).expand({cache.shape().num_kv_heads, -1}));
  CountEviction(layer, length - budget());
}

std::optional<BatchedDecodeStep> StreamingLlmPolicy::PlanBatchedDecode(const KvCache& cache) {
  BatchedDecodeStep step;
  if (cache.length(0) + 1 <= budget()) return step;  // append only
  step.rule = BatchedDecodeStep::Rule::kRingVictim;
  step.ring_victim = RingHead(0);
  return step;
}

void StreamingLlmPolicy::CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) {
  const bool evicted = step.rule == BatchedDecodeStep::Rule::kRingVictim;
  CommitDecodeToken(cache, evicted);
  if (!evicted) return;
  for (int64_t layer = 0; layer < cache.shape().num_layers; ++layer) AdvanceRing(RingHead(layer));
}

}  // namespace kvserve
