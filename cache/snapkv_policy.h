// SNAPKV: prefills the prompt without eviction, compresses it once at its end to the budget (the
// last w prompt tokens plus the prefix tokens they attend to most, after pooling), then grows
// during decode; ORIGINAL positions. Implements policies.md §4.3 with §0.5 items 2, 6, 9, 14, 15
// and 19.
#pragma once

#include <absl/status/statusor.h>

#include <vector>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"
#include "cache/policy_factory.h"

namespace kvserve {

class SnapKvPolicy : public CachePolicy {
 public:
  enum class Pooling { kAverage, kMax };
  struct Params {
    int64_t budget_tokens = 0;
    int64_t window_tokens = 0;
    int64_t kernel_size = 5;
    Pooling pooling = Pooling::kAverage;
    int64_t prompt_tokens = 0;
    int64_t max_new_tokens = 0;
  };

  // Defaults (§0.5 item 19): window_tokens = min(32, budget / 2), kernel_size 5, pooling average.
  // INVALID_ARGUMENT naming the field for unknown or non-integral parameters, window_tokens < 1,
  // budget <= window_tokens, an even or < 1 kernel_size, or pooling not in {0, 1, 2}.
  static absl::StatusOr<Params> Resolve(const CacheSpec& spec, const PolicyContext& context);
  static PolicyDescription Describe();

  explicit SnapKvPolicy(const Params& params) : params_(params) {}

  const Params& params() const { return params_; }

  PositionMode position_mode() const override { return PositionMode::kOriginal; }
  // §0.5 item 9: the whole prompt is held before it is compressed, then the cache grows by one per
  // generated token. Nothing depends on the chunk size.
  int64_t Capacity(int64_t /*max_step_tokens*/) const override;
  // Before the prompt's end: accumulates the window queries' attention over the prefix. At the
  // step that completes the prompt: compresses to the budget. During decode: nothing.
  void Update(KvCache& cache, const LayerStep& step) override;
  // Decode steps (after the prompt) only append. A one-token step inside a prompt over the budget
  // (a prompt fed a token at a time, or a last chunk of one token) is a prompt step: nullopt, so
  // Update sees it and compresses at the prompt's end.
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override;

 private:
  // Adds the attention of the step's queries from `first_query` on (window queries) to the prefix.
  void AccumulateWindowAttention(const LayerStep& step, int64_t first_query);
  void Compress(KvCache& cache, int64_t layer);

  Params params_;
  // Per layer [kv_heads, prompt - window] float32: Σ over the window queries seen so far of the
  // group-mean attention on each prefix key. Released after compression.
  std::vector<at::Tensor> window_mass_;
};

}  // namespace kvserve
