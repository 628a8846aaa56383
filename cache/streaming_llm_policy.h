// STREAMING_LLM: keeps the first S tokens (attention sinks) and the W most recent, dropping the
// oldest non-sink tokens (FIFO); positions are ranks in the cache (IN-CACHE), kept as §4.1's [D]
// note says: keys stored rotated with their stream positions, the sinks turned at attention
// (PositionMode::kShiftedSinks), so no step re-rotates the window. Implements policies.md §4.1 with
// §0.5 items 1, 6 and 19.
//
// Layout: prefill chunks leave the cache in temporal order. A decode step that overflows the
// budget writes its token into the slot of the oldest window token, so the window slots
// [S, S + W) become a ring (RingLayout) and no other slot moves: O(1) work per step.
#pragma once

#include <absl/status/statusor.h>

#include <vector>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"
#include "cache/policy_factory.h"

namespace kvserve {

class StreamingLlmPolicy : public CachePolicy {
 public:
  struct Params {
    int64_t sink_tokens = 4;
    int64_t window_tokens = 0;
  };

  // Defaults: sink_tokens 4, window_tokens = budget - sink_tokens. INVALID_ARGUMENT naming the
  // field for unknown or non-integral parameters, sink_tokens < 0, budget < sink_tokens + 1, or
  // sink_tokens + window_tokens != budget.
  static absl::StatusOr<Params> Resolve(const CacheSpec& spec, const PolicyContext& context);
  static PolicyDescription Describe();

  explicit StreamingLlmPolicy(const Params& params) : params_(params) {}

  const Params& params() const { return params_; }
  int64_t budget() const { return params_.sink_tokens + params_.window_tokens; }

  PositionMode position_mode() const override { return PositionMode::kShiftedSinks; }
  int64_t Capacity(int64_t max_step_tokens) const override { return budget() + max_step_tokens; }
  // A chunk: keeps slots [0, S) and the last W, in temporal order. A decode step over the budget:
  // the new token takes the oldest window token's slot.
  void Update(KvCache& cache, const LayerStep& step) override;
  RingLayout ring_layout(int64_t layer) const override;
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override;
  void CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) override;

 private:
  // The slot of layer's oldest window token (S until the first decode eviction).
  int64_t& RingHead(int64_t layer);
  // After the oldest window token left: the next oldest is one slot on, round the ring.
  void AdvanceRing(int64_t& head) const;

  Params params_;
  std::vector<int64_t> ring_heads_;  // per layer
};

}  // namespace kvserve
