// CritiPrefill's per-request knobs (prefill_and_heads.md §1.2, §1.3, §1.8), their defaults and
// their validation. Torch-free: the engine resolves a request's PrefillSpec::params with it at
// Submit, and GetModelInfo lists the parameters from DescribeCritiPrefillParams.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cache/cache_spec.h"

namespace kvserve {

struct CritiPrefillParams {
  int64_t segment_size = 512;  // S: queries per segment
  int64_t block_size = 32;     // B: keys per block; divides S
  // k: blocks a sparse segment reads besides its own keys (β = k·B tokens). Clamped per segment to
  // the blocks it may read (§1.3's "k_eff = min(k, s·r)"), so dense_prefix_tokens < k·B is allowed.
  int64_t kept_blocks = 64;
  // Blocks every sparse segment reads whatever their score: the first `first_blocks` of the stream
  // and the `local_blocks` just before the segment. They count towards kept_blocks. Not in the
  // official code (whose defaults are 0).
  int64_t first_blocks = 0;
  int64_t local_blocks = 0;
  int64_t dense_prefix_tokens = 4096;  // τ: segments starting before it are dense; a multiple of S
  int64_t dense_layers = 1;            // layers 0..dense_layers-1 run dense ("layer_skip")
  bool layer_fusion = true;            // F ← 0.25·F + 0.75·P across the sparse layers
  // The weight of the previous layers' fused matrix; hard-coded in the official code.
  static constexpr double kFusionWeight = 0.25;

  friend bool operator==(const CritiPrefillParams&, const CritiPrefillParams&) = default;
};

// What the parameters are checked against.
struct CritiPrefillLimits {
  int64_t num_layers = 0;
  // The most prompt tokens of one request per step. Chunks are cut on segment boundaries (§1.8), so
  // segment_size must not exceed it.
  int64_t prefill_chunk = 0;
};

// The parameters of a request ("segment_size", ... as in the API's CritiPrefillParams; booleans as
// 0/1), the defaults above for those left out. INVALID_ARGUMENT naming the field
// ("prefill.critiprefill.block_size must divide segment_size (512), got 48") for unknown names,
// non-integral values, segment_size outside [1, prefill_chunk], block_size < 1 or not dividing
// segment_size, kept_blocks < 1, first_blocks or local_blocks < 0, first_blocks + local_blocks >
// kept_blocks, dense_prefix_tokens < 0 or not a multiple of segment_size, dense_layers outside
// [0, num_layers], layer_fusion not 0 or 1.
absl::StatusOr<CritiPrefillParams> ResolveCritiPrefillParams(
    const std::map<std::string, double>& params, const CritiPrefillLimits& limits);

// CritiPrefill's chunking (§1.8): a prompt chunk that starts after `done` prompt tokens and may
// bring `tokens` of the `remaining` ones is shortened to end on a multiple of `alignment` (the
// segment size), unless it ends the prompt or no such end lies inside it (a cap below a segment:
// then it stays as it is, runs dense, and the request still progresses).
int64_t AlignedChunkTokens(int64_t done, int64_t tokens, int64_t remaining, int64_t alignment);

// The parameters with their descriptions and defaults, in the API's order.
std::vector<PolicyParameter> DescribeCritiPrefillParams();

}  // namespace kvserve
