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

// Contract with the model (IN-CACHE positions): after every Update the layer's slots are in
// temporal order — sinks, then sub-cache C−1 oldest→newest, …, sub-cache 0 oldest→newest — so slot
// rank is the §1.6 position. The sub-caches' circular buffers exist only as bookkeeping
// (start/stored per request, §1.2): a physical slot's cache index follows from them, so only the
// per-(layer, KV head) scores are stored, aligned with the cache's slots.
//
// Decisions (which token wins a competition) are made on the host from one [kv_heads, length]
// statistic copied per layer and step; the kept slots go back as one KvCache::Keep.
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
  // Scores the step's attention (recomputed from LayerStep::queries/keys: EMA weights and the
  // group max are not the backend's key mass), then inserts the step's tokens in order (§1.4).
  void Update(KvCache& cache, const LayerStep& step) override;

  // EMA scores of `layer`'s held slots as §1.5 defines them (the (1 − β) factor included), in slot
  // order, [kv_heads, length] float32 on the CPU; sinks read 0. For tests and debugging.
  at::Tensor Scores(int64_t layer) const;

 private:
  // The data-independent part of the state, one per request (§1.2).
  struct Schedule {
    int64_t sinks = 0;
    std::vector<int64_t> start, stored;
  };

  // Inserts the step's tokens (slots held..length−1, the first of stream index `first_token`) into
  // per-head physical buffers and returns, per head, the kept slots in temporal order
  // [kv_heads * kept]. Advances `schedule`.
  std::vector<int64_t> Insert(Schedule& schedule, const std::vector<float>& scores,
                              int64_t kv_heads, int64_t held, int64_t length,
                              int64_t first_token) const;

  CascadingParams params_;
  Schedule schedule_;            // the state before the current step
  int64_t schedule_tokens_ = 0;  // tokens_seen() that schedule_ belongs to
  Schedule next_schedule_;       // the state after the step being applied to each layer
  int64_t next_schedule_tokens_ = -1;
  // Per layer: scores without the (1 − β) factor (so β = 1 still ranks: the factor is common to
  // every score), [kv_heads * length] aligned with the cache's slots.
  std::vector<std::vector<float>> scores_;
  std::vector<int64_t> score_length_;
};

}  // namespace kvserve
