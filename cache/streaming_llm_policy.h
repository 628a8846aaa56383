// STREAMING_LLM: keeps the first S tokens (attention sinks) and the W most recent, dropping the
// oldest non-sink tokens (FIFO); positions are ranks in the cache (IN-CACHE), so keys are stored
// un-rotated. Implements policies.md §4.1 with §0.5 items 1, 6 and 19.
#pragma once

#include <absl/status/statusor.h>

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

  PositionMode position_mode() const override { return PositionMode::kInCache; }
  int64_t Capacity(int64_t max_step_tokens) const override { return budget() + max_step_tokens; }
  // Keeps slots [0, S) and the last W, in temporal order (so ranks stay temporal).
  void Update(KvCache& cache, const LayerStep& step) override;

 private:
  Params params_;
};

}  // namespace kvserve
