// Tensor plumbing shared by the selection policies: attention probabilities recomputed from a
// step's rotated queries and keys (for statistics the backend's key mass does not give, policies.md
// §0.4), and the host round trip of per-head decisions (statistics down, slot indices back).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "cache/kv_cache.h"

namespace kvserve {

// softmax(q·kᵀ/√d) with the causal mask, in float32: [kv_heads, group, nq, length].
// `queries` [nq, num_heads, head_dim] are the LAST nq queries of the step, so query i sits at key
// position length − nq + i and sees keys 0..length − nq + i. `keys` [kv_heads, length, head_dim].
at::Tensor StepAttentionProbs(const at::Tensor& queries, const at::Tensor& keys);

// A float32 copy of `stat` on the host, row-major (one device-to-host copy).
std::vector<float> ToHost(const at::Tensor& stat);

// KvCache::Keep with per-head slot lists given row-major on the host: `slots` [kv_heads * kept].
void KeepSlots(KvCache& cache, int64_t layer, const std::vector<int64_t>& slots, int64_t kept);

}  // namespace kvserve
