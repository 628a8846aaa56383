// EvictOneToken and MoveAlongChains (decode_maintenance.h): one block per (entry, layer), one warp
// per KV head.
#include "kernels/decode_maintenance.h"
#include "kernels/device_math.cuh"

namespace kvserve::kernels {
namespace {

// The candidate a lane or the warp would evict: lowest score, then largest position.
struct Candidate {
  float score;
  int64_t position;
  int32_t slot;
};

__device__ __forceinline__ bool Worse(const Candidate& a, const Candidate& b) {
  // True if a should be evicted before b.
  if (a.slot < 0) return false;
  if (b.slot < 0) return true;
  return a.score < b.score || (a.score == b.score && a.position > b.position);
}

// The offset of (layer, head)'s per-slot arrays, and its keys or values.
__device__ __forceinline__ int64_t SlotArrays(const CacheRows& c, int layer, int head) {
  return layer * c.slot_layer_stride + head * c.slot_head_stride;
}
template <typename T>
__device__ __forceinline__ T* HeadRows(void* base, const CacheRows& c, int layer, int head) {
  return static_cast<T*>(base) + layer * c.layer_stride + head * c.head_stride;
}

template <typename T>
__global__ void EvictKernel(int32_t head_dim, const EvictionEntry* entries) {
  const EvictionEntry& e = entries[blockIdx.x];
  const CacheRows& c = e.cache;
  const int layer = blockIdx.y, head = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int last = c.length - 1;
  const int64_t slots = SlotArrays(c, layer, head);
  int64_t* positions = c.positions + slots;
  float* scores = nullptr;
  int victim = e.ring_victim;
  if (e.rule == EvictionRule::kLowestScore) {
    scores = e.scores + slots;
    const float* mass = e.key_mass + slots;
    Candidate best{0.f, 0, -1};
    for (int slot = lane; slot < c.length; slot += 32) {
      const float score = (slot == last ? 0.f : scores[slot]) + mass[slot];
      scores[slot] = score;
      const Candidate c{score, positions[slot], slot};
      if (c.position < e.min_recent_position && Worse(c, best)) best = c;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      Candidate other{__shfl_xor_sync(0xffffffffu, best.score, offset),
                      __shfl_xor_sync(0xffffffffu, best.position, offset),
                      __shfl_xor_sync(0xffffffffu, best.slot, offset)};
      if (Worse(other, best)) best = other;
    }
    if (!e.evict || best.slot < 0) return;  // not over the budget, or nothing old enough
    victim = best.slot;
    __syncwarp();  // the last slot's score, written by another lane, is read below
  }
  T* keys = HeadRows<T>(c.keys, c, layer, head);
  T* values = HeadRows<T>(c.values, c, layer, head);
  for (int i = lane; i < head_dim; i += 32) {
    keys[static_cast<int64_t>(victim) * head_dim + i] =
        keys[static_cast<int64_t>(last) * head_dim + i];
    values[static_cast<int64_t>(victim) * head_dim + i] =
        values[static_cast<int64_t>(last) * head_dim + i];
  }
  if (lane == 0) {
    positions[victim] = positions[last];
    if (scores != nullptr) scores[victim] = scores[last];
  }
}

// Carries one element along the chain: slot chain[k] receives what chain[k - 1] held before.
template <typename E>
__device__ __forceinline__ void Carry(E* base, int64_t stride, const int32_t* chain, int hops,
                                      int64_t offset) {
  E carried = base[chain[0] * stride + offset];
  for (int k = 1; k <= hops; ++k) {
    E& slot = base[chain[k] * stride + offset];
    const E displaced = slot;
    slot = carried;
    carried = displaced;
  }
}

template <typename T>
__global__ void ChainKernel(int32_t head_dim, const ChainEntry* entries) {
  const ChainEntry& e = entries[blockIdx.x];
  const CacheRows& c = e.cache;
  const int layer = blockIdx.y, head = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int last = c.length - 1;
  const int64_t slots = SlotArrays(c, layer, head);
  float* scores = e.scores + slots;
  float* counts = e.counts == nullptr ? nullptr : e.counts + slots;
  const float* mass = e.key_mass + slots;
  for (int slot = lane; slot < c.length; slot += 32) {
    // Rounded as the host computes it (no fused multiply-add), so both paths decide alike.
    const float added = __fmul_rn(e.mass_scale, mass[slot]);
    scores[slot] = slot == last ? added : __fadd_rn(added, __fmul_rn(e.score_decay, scores[slot]));
    if (counts != nullptr) counts[slot] = slot == last ? 1.f : counts[slot] + 1.f;
  }
  __syncwarp();  // every lane reads the updated scores of slots other lanes wrote
  int hops = e.chain_length - 1;
  if (hops <= 0) return;
  const int32_t* chain = e.chain;
  bool take_last = true;
  if (e.last_hop == LastHop::kIfNotWorse) {
    take_last = scores[chain[hops - 1]] >= scores[chain[hops]];
  } else if (e.last_hop != LastHop::kAlways) {
    const bool left_wins =
        static_cast<double>(scores[e.left]) / static_cast<double>(counts[e.left]) >
        static_cast<double>(scores[e.right]) / static_cast<double>(counts[e.right]);
    take_last = left_wins == (e.last_hop == LastHop::kIfLeftWins);
  }
  __syncwarp();  // the decision is read before lane 0 moves the scores
  if (!take_last) --hops;
  if (hops <= 0) return;
  T* keys = HeadRows<T>(c.keys, c, layer, head);
  T* values = HeadRows<T>(c.values, c, layer, head);
  for (int i = lane; i < head_dim; i += 32) {
    Carry(keys, head_dim, chain, hops, i);
    Carry(values, head_dim, chain, hops, i);
  }
  if (lane == 0) {
    Carry(c.positions + slots, 1, chain, hops, 0);
    Carry(scores, 1, chain, hops, 0);
    if (counts != nullptr) Carry(counts, 1, chain, hops, 0);
  }
}

}  // namespace

cudaError_t MoveAlongChains(DType dtype, int32_t head_dim, int32_t kv_heads, int32_t layers,
                            const ChainEntry* entries, int32_t count, cudaStream_t stream) {
  if (count == 0 || layers == 0) return cudaSuccess;
  if (kv_heads < 1 || kv_heads > 32) return cudaErrorInvalidValue;
  return DispatchDType(dtype, [&](auto type) {
    using T = decltype(type);
    ChainKernel<T><<<dim3(count, layers), 32 * kv_heads, 0, stream>>>(head_dim, entries);
    return cudaGetLastError();
  });
}

cudaError_t EvictOneToken(DType dtype, int32_t head_dim, int32_t kv_heads, int32_t layers,
                          const EvictionEntry* entries, int32_t count, cudaStream_t stream) {
  if (count == 0 || layers == 0) return cudaSuccess;
  if (kv_heads < 1 || kv_heads > 32) return cudaErrorInvalidValue;
  return DispatchDType(dtype, [&](auto type) {
    using T = decltype(type);
    EvictKernel<T><<<dim3(count, layers), 32 * kv_heads, 0, stream>>>(head_dim, entries);
    return cudaGetLastError();
  });
}

}  // namespace kvserve::kernels
