// FREQKV: when the cache is full, the non-sink, non-recent span of N_c entries is replaced by its L
// lowest DCT frequencies resampled to L pseudo-tokens (one fixed L × N_c matrix for keys and
// values). Implements policies.md §3 (FreqKV) with §0.5 items 6, 10, 18 and 19.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"
#include "cache/policy_factory.h"

namespace kvserve {

struct FreqKvParams {
  int64_t cache_tokens = 32;  // N_cap, sinks included
  int64_t sink_tokens = 4;    // S, never compressed
  int64_t recent_tokens = 0;  // R, the newest raw tokens, not compressed
  int64_t ratio_numerator = 1;
  int64_t ratio_denominator = 2;  // γ = numerator / denominator

  int64_t span() const { return cache_tokens - sink_tokens - recent_tokens; }  // N_c
  // L = ⌊N_c·γ⌋ in integers (§0.5 item 18).
  int64_t kept_frequencies() const { return span() * ratio_numerator / ratio_denominator; }
};

// Positions are IN-CACHE: slots are [sinks][pseudo-tokens][raw tokens] and slot rank is the
// position (§3.4). Keys are compressed un-rotated, as the cache holds them.
//
// Timing: the scheduler caps a step at N_cap − length tokens (MaxStepTokens, §0.5 item 10), so a
// step can fill the cache to N_cap exactly; Update then compresses at once. That is the spec's
// "before the next token is appended" moved to the end of the step that filled the cache: every
// query sees the same cache, the layer never holds more than N_cap, and between steps it holds at
// most N_cap − 1 (the spec's state "length N_cap, next query compresses first" is never observed).
//
// A pseudo-token's recorded position (KvCache::positions, informational under IN-CACHE) is that of
// the span entry at the centre of its resampling interval, entry ⌊(2m + 1)·N_c / (2L)⌋.
// Stats: evicted_tokens counts N_c − L per compression; compression_events counts compressions
// (layer 0).
class FreqKvPolicy : public CachePolicy {
 public:
  // Defaults and validation (§0.5 items 6, 18, 19); INVALID_ARGUMENT names the field.
  static absl::StatusOr<FreqKvParams> Resolve(const CacheSpec& spec, const PolicyContext& context);
  static PolicyDescription Describe();

  // T [L, N] in float64 (§3.2): DCT-II ortho, keep the lowest L, length-L DCT-III ortho, × √(L/N).
  // REQUIRES: 1 <= l <= n.
  static at::Tensor CompressionMatrix(int64_t n, int64_t l);

  explicit FreqKvPolicy(const FreqKvParams& params) : params_(params) {}

  PositionMode position_mode() const override { return PositionMode::kInCache; }
  int64_t Capacity(int64_t /*max_step_tokens*/) const override { return params_.cache_tokens; }
  int64_t MaxStepTokens(const KvCache& cache, int64_t wanted) const override;
  // A decode step that does not fill the cache only appends; the one that fills it compresses
  // (Update per layer).
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override;
  void Update(KvCache& cache, const LayerStep& step) override;

 private:
  FreqKvParams params_;
  at::Tensor matrix_;  // float32 T on the cache's device, made at the first compression
};

}  // namespace kvserve
