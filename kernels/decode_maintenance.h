// Cache maintenance after a decode step, for many requests and every layer in one launch.
// EvictOneToken: the policies whose decode step evicts exactly one token by a rule a kernel can
// apply (StreamingLLM's ring window, H2O's lowest accumulated score); the evicted token's slot
// receives the step's new token, which sits in the last held slot, so no other slot moves.
// MoveAlongChains: the policies whose decode step moves a few tokens along a chain of slots that
// is the same for every layer and head, with at most the last move decided per head by scores
// (Cascading's sub-caches, TreeKV's pair at the pointer).
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

// Where one request's cache lives, strides in elements as DecodeSequence's (decode_step.h): K/V
// element (layer, head, slot, dim) at keys + layer * layer_stride + head * head_stride + slot *
// head_dim + dim. The per-slot arrays (positions, and the scores, counts and key mass a rule
// reads) are all [layers, kv_heads, capacity]: (layer, head, slot) at layer * slot_layer_stride +
// head * slot_head_stride + slot.
struct CacheRows {
  void* keys = nullptr;
  void* values = nullptr;
  int64_t layer_stride = 0;
  int64_t head_stride = 0;
  int64_t* positions = nullptr;
  int64_t slot_layer_stride = 0;
  int64_t slot_head_stride = 0;
  int32_t length = 0;  // slots held after the step's append; the new token is in slot length - 1
};

// One request's decode-step eviction.
struct EvictionEntry {
  CacheRows cache;
  float* scores = nullptr;          // kLowestScore
  const float* key_mass = nullptr;  // kLowestScore: the step's mass (DecodeAttention's key_mass)
  EvictionRule rule = EvictionRule::kRingVictim;
  int32_t evict = 1;  // kLowestScore: 0 accumulates the scores only
  int32_t ring_victim = 0;
  int64_t min_recent_position = 0;
};

// Applies `count` entries (device memory) to layers [0, layers) of each. REQUIRES: kv_heads <= 32;
// each entry's victim is never its last slot.
cudaError_t EvictOneToken(DType dtype, int32_t head_dim, int32_t kv_heads, int32_t layers,
                          const EvictionEntry* entries, int32_t count, cudaStream_t stream);

// How the last hop of a chain is decided per (layer, KV head) (cache_policy.h, LastHop).
enum class LastHop : int32_t {
  kAlways = 0,
  kIfNotWorse = 1,   // score[chain[n-2]] >= score[chain[n-1]]
  kIfLeftWins = 2,   // score[left] / count[left] > score[right] / count[right] (double)
  kIfRightWins = 3,  // not kIfLeftWins
};

constexpr int32_t kMaxChain = 40;

// One request's decode-step chain.
struct ChainEntry {
  CacheRows cache;
  float* scores = nullptr;
  float* counts = nullptr;  // nullptr: no counts
  const float* key_mass = nullptr;
  // First, for every slot j < length: score = score_decay * score + mass_scale * mass (slot
  // length - 1: mass_scale * mass), count = count + 1 (slot length - 1: 1).
  float score_decay = 1;
  float mass_scale = 1;
  // Then the token in chain[0] moves to chain[1], the one displaced there to chain[2], ...; the
  // token displaced from the last slot, or refused by last_hop, leaves. Slot indices < length.
  int32_t chain_length = 0;
  LastHop last_hop = LastHop::kAlways;
  int32_t left = 0;
  int32_t right = 0;
  int32_t chain[kMaxChain] = {};
};

// Applies `count` entries (device memory) to layers [0, layers) of each: one block per (entry,
// layer), one warp per KV head. REQUIRES: kv_heads <= 32.
cudaError_t MoveAlongChains(DType dtype, int32_t head_dim, int32_t kv_heads, int32_t layers,
                            const ChainEntry* entries, int32_t count, cudaStream_t stream);

}  // namespace kvserve::kernels
