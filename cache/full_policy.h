// FULL: keeps every token (no budget). The baseline every compressed policy is measured against.
#pragma once

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"

namespace kvserve {

class FullPolicy : public CachePolicy {
 public:
  // `max_tokens`: prompt + max_new_tokens, the most the request will ever hold.
  explicit FullPolicy(int64_t max_tokens) : max_tokens_(max_tokens) {}

  static PolicyDescription Describe();

  PositionMode position_mode() const override { return PositionMode::kOriginal; }
  int64_t Capacity(int64_t /*max_step_tokens*/) const override { return max_tokens_; }
  void Update(KvCache& cache, const LayerStep& step) override;
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& /*cache*/) override {
    return BatchedDecodeStep{};
  }

 private:
  int64_t max_tokens_;
};

}  // namespace kvserve
