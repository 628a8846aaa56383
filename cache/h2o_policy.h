// H2O (Heavy-Hitter Oracle): keeps the `recent` newest tokens plus the `heavy` older tokens that
// have received the most attention so far (per layer and KV head); ORIGINAL positions.
// Implements policies.md §4.2 with §0.5 items 2, 4, 5, 6, 7, 14 and 19.
#pragma once

#include <absl/status/statusor.h>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"
#include "cache/policy_factory.h"

namespace kvserve {

class H2oPolicy : public CachePolicy {
 public:
  struct Params {
    int64_t heavy_tokens = 0;
    int64_t recent_tokens = 0;
  };

  // Defaults (§0.5 item 5): recent_tokens = budget / 2 (or budget - heavy_tokens when only
  // heavy_tokens is given), heavy_tokens = budget - recent_tokens. INVALID_ARGUMENT naming the
  // field for unknown or non-integral parameters, either < 1, or heavy + recent != budget.
  static absl::StatusOr<Params> Resolve(const CacheSpec& spec, const PolicyContext& context);
  static PolicyDescription Describe();

  explicit H2oPolicy(const Params& params) : params_(params) {}

  const Params& params() const { return params_; }
  int64_t budget() const { return params_.heavy_tokens + params_.recent_tokens; }
  // Accumulated attention of `layer`'s held slots, [kv_heads, length] float32, slot-aligned with
  // the cache (undefined before the first step).
  at::Tensor scores(const KvCache& cache, int64_t layer) const;

  PositionMode position_mode() const override { return PositionMode::kOriginal; }
  bool wants_key_mass() const override { return true; }
  int64_t Capacity(int64_t max_step_tokens) const override { return budget() + max_step_tokens; }
  // Adds the step's key mass to the scores, then evicts back to the budget. A chunk: one (score
  // desc, p asc) selection of heavy_tokens among the non-recent slots, per KV head (§0.5 item 7).
  // A decode step: the lowest-scored non-recent token leaves (the newest among equal scores) and
  // the new token takes its slot, so slot order stops being temporal once decoding evicts.
  void Update(KvCache& cache, const LayerStep& step) override;
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override;
  void CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) override;

 private:
  // The scores of every layer, [layers, kv_heads, capacity] float32, allocated at the first use.
  const at::Tensor& ScoreStorage(const KvCache& cache);
  // During a decode step (tokens_seen() its token's position): tokens at positions >= this are
  // the recent window, never evicted.
  int64_t MinRecentPosition(const KvCache& cache) const;

  Params params_;
  at::Tensor scores_;
};

}  // namespace kvserve
