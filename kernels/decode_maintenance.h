// Cache maintenance after a decode step, for many requests and every layer in one launch: the
// policies whose decode step evicts exactly one token by a rule a kernel can apply (StreamingLLM's
// ring window, H2O's lowest accumulated score). The evicted token's slot receives the step's new
// token, which sits in the last held slot, so no other slot moves.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace kvserve::kernels {

enum class EvictionRule : int32_t {
  // The token in `ring_victim` leaves (the oldest of a StreamingLLM window), in every layer and
  // head.
  kRingVictim = 1,
  // Per layer and head: scores[slot] += key_mass[slot] (the new token's score starts at 0), then
  // the
  // slot with the lowest score among those whose position < min_recent_position leaves; among
  // equal scores the newest (largest position) leaves (policies.md §0.5 items 2 and 4).
  kLowestScore = 2,
};

// One request's decode-step eviction. Strides in elements, as DecodeSequence (decode_step.h).
struct EvictionEntry {
  void* keys = nullptr;
  void* values = nullptr;
  int64_t layer_stride = 0;
  int64_t head_stride = 0;
  int64_t* positions = nullptr;
  int64_t positions_layer_stride = 0;
  int64_t positions_head_stride = 0;
  float* scores = nullptr;  // kLowestScore, slot-aligned with the cache
  int64_t scores_layer_stride = 0;
  int64_t scores_head_stride = 0;
  const float* key_mass = nullptr;  // kLowestScore: the step's mass (DecodeAttention's key_mass)
  int64_t mass_layer_stride = 0;
  int64_t mass_head_stride = 0;
  int32_t length = 0;  // slots held after the step's append; the new token is in slot length - 1
  EvictionRule rule = EvictionRule::kRingVictim;
  int32_t evict = 1;  // kLowestScore: 0 accumulates the scores only
  int32_t ring_victim = 0;
  int64_t min_recent_position = 0;
};

// Applies `count` entries (device memory) to layers [0, layers) of each. REQUIRES: kv_heads <= 32;
// each entry's victim is never its last slot.
cudaError_t EvictOneToken(DType dtype, int32_t head_dim, int32_t kv_heads, int32_t layers,
                          const EvictionEntry* entries, int32_t count, cudaStream_t stream);

}  // namespace kvserve::kernels
