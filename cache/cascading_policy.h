// CASCADING: sinks + C cascading sub-caches of W slots; sub-cache i accepts every 2^i-th offered
// token and otherwise keeps the better (EMA attention score) of the offered and its newest token.
// Implements policies.md §1 (Cascading KV Cache) with §0.5 items 6, 11, 12, 13 and 19.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <vector>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"
#include "cache/policy_factory.h"
#include "cache/stepped_layout.h"

namespace kvserve {

struct CascadingParams {
  enum class HeadReduction { kMax, kMean };
  int64_t sink_tokens = 4;
  int64_t num_cascades = 4;      // C
  int64_t cascade_tokens = 7;    // W
  double ema_decay = 0.9999999;  // β
  HeadReduction head_reduction = HeadReduction::kMax;

  int64_t budget() const { return sink_tokens + num_cascades * cascade_tokens; }
};

// Layout (IN-CACHE positions): slots [0, S) hold the sinks and sub-cache i's circular buffer is
// the cache slots [S + i·W, S + (i + 1)·W), so a token never moves but along its cascade and a
// step moves at most C + 1 tokens per head. The buffers fill in order, so held slots stay a
// prefix. Ranks come from the data-independent start/stored (§1.6), one table for every layer and
// head (ring_layout). Scores are per (layer, KV head), slot-aligned with the cache.
//
// A chunk (Update): the step's EMA statistic is recomputed from LayerStep::queries/keys (EMA
// weights and the group max are not the backend's key mass), then the tokens are inserted in order
// (§1.4) on the host, one KvCache::Keep. A decode step in a batch (PlanBatchedDecode): one token's
// insertion is one chain of slots, its only per-head decision a competition at its end, so one
// kernel applies it to every layer and head from the attention's key mass.
// Stats: evicted_tokens counts tokens dropped or discarded; compression_events counts steps that
// dropped at least one token (layer 0).
class CascadingPolicy : public CachePolicy {
 public:
  // Defaults and validation (§0.5 items 6 and 19); INVALID_ARGUMENT names the field
  // ("cache.cascading.cascade_tokens", "cache.budget_tokens", ...).
  static absl::StatusOr<CascadingParams> Resolve(const CacheSpec& spec,
                                                 const PolicyContext& context);
  static PolicyDescription Describe();

  explicit CascadingPolicy(const CascadingParams& params);

  PositionMode position_mode() const override { return PositionMode::kInCache; }
  int64_t Capacity(int64_t max_step_tokens) const override {
    return params_.budget() + max_step_tokens;
  }
  void Update(KvCache& cache, const LayerStep& step) override;
  RingLayout ring_layout(int64_t layer) const override;
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override;
  void CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) override;

  // EMA scores of `layer`'s held slots as §1.5 defines them (the (1 − β) factor included), in slot
  // order, [kv_heads, length] float32 on the CPU; sinks read 0. For tests and debugging.
  at::Tensor Scores(const KvCache& cache, int64_t layer) const;

 private:
  // The data-independent part of the state, one per request (§1.2).
  struct Schedule {
    int64_t sinks = 0;
    std::vector<int64_t> start, stored;
  };
  // One token's insertion (§1.4): the chain of cache slots it starts in `slot`
  // (BatchedDecodeStep), whether the last hop is a competition, and whether the cache grew.
  struct Insertion {
    std::vector<int32_t> chain;
    bool competes = false;
    bool grows = false;
  };

  // Inserts token `p`, now in cache slot `slot`, into `schedule`.
  Insertion Insert(Schedule& schedule, int64_t slot, int64_t p) const;
  // The §1.6 rank of every held slot under `schedule`.
  std::vector<int32_t> Ranks(const Schedule& schedule) const;
  // Scores without the (1 − β) factor (so β = 1 still ranks: the factor is common to every score),
  // [layers, kv_heads, capacity] float32 on the cache's device, allocated at the first use.
  const at::Tensor& ScoreStorage(const KvCache& cache);

  CascadingParams params_;
  SteppedLayout<Schedule> layout_;
  Schedule planned_;  // PlanBatchedDecode's schedule after the step
  at::Tensor scores_;
};

}  // namespace kvserve
