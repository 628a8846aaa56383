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

// Whether the last hop is taken for one (layer, head), from its updated scores.
__device__ __forceinline__ bool TakesLastHop(const ChainEntry& e, const float* scores,
                                             const float* counts, int hops) {
  if (e.last_hop == LastHop::kAlways) return true;
  if (e.last_hop == LastHop::kIfNotWorse) return scores[e.chain[hops - 1]] >= scores[e.chain[hops]];
  const bool left_wins =
      static_cast<double>(scores[e.left]) / static_cast<double>(counts[e.left]) >
      static_cast<double>(scores[e.right]) / static_cast<double>(counts[e.right]);
  return left_wins == (e.last_hop == LastHop::kIfLeftWins);
}

// One block per (entry, layer), in three passes with the block in step between them: every head's
// scores (a few independent loads in flight per thread), each head's hop count, then the moves.
// A thread moves whole words (`Word`, up to 16 bytes) of one head's key or value rows, or one of
// its per-slot arrays, along the chain, so the only dependent memory round trips left are the hops.
template <typename T, typename Word>
__global__ void ChainKernel(int32_t row_words, int32_t kv_heads, const ChainEntry* entries) {
  __shared__ int hops_of[32];  // per KV head
  const ChainEntry& e = entries[blockIdx.x];
  const CacheRows c = e.cache;  // a copy: the loops below would reload the strides after each store
  const int layer = blockIdx.y;
  const int last = c.length - 1;
  constexpr int kUnroll = 4;
  const int updates = kv_heads * c.length;
  for (int first = threadIdx.x; first < updates; first += kUnroll * blockDim.x) {
    int64_t at[kUnroll];
    float mass[kUnroll], score[kUnroll], count[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = first + u * blockDim.x;
      at[u] = i < updates ? SlotArrays(c, layer, i / c.length) + i % c.length : -1;
      if (at[u] < 0) continue;
      mass[u] = e.key_mass[at[u]];
      score[u] = e.scores[at[u]];
      if (e.counts != nullptr) count[u] = e.counts[at[u]];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (at[u] < 0) continue;
      const bool newest = (first + u * blockDim.x) % c.length == last;
      // Rounded as the host computes it (no fused multiply-add), so both paths decide alike.
      const float added = __fmul_rn(e.mass_scale, mass[u]);
      e.scores[at[u]] = newest ? added : __fadd_rn(added, __fmul_rn(e.score_decay, score[u]));
      if (e.counts != nullptr) e.counts[at[u]] = newest ? 1.f : count[u] + 1.f;
    }
  }
  const int hops = e.chain_length - 1;
  if (hops <= 0) return;
  __syncthreads();  // the decisions read scores other threads wrote
  if (threadIdx.x < kv_heads) {
    const int64_t slots = SlotArrays(c, layer, threadIdx.x);
    const float* counts = e.counts == nullptr ? nullptr : e.counts + slots;
    hops_of[threadIdx.x] = TakesLastHop(e, e.scores + slots, counts, hops) ? hops : hops - 1;
  }
  __syncthreads();                      // every decision is made before the scores move
  const int parts = 2 * row_words + 3;  // key words, value words, positions, scores, counts
  for (int task = threadIdx.x; task < kv_heads * parts; task += blockDim.x) {
    const int head = task / parts, part = task % parts;
    const int head_hops = hops_of[head];
    if (head_hops <= 0) continue;
    const int64_t slots = SlotArrays(c, layer, head);
    if (part < 2 * row_words) {
      T* rows = HeadRows<T>(part < row_words ? c.keys : c.values, c, layer, head);
      Carry(reinterpret_cast<Word*>(rows), row_words, e.chain, head_hops, part % row_words);
    } else if (part == 2 * row_words) {
      Carry(c.positions + slots, 1, e.chain, head_hops, 0);
    } else if (part == 2 * row_words + 1) {
      Carry(e.scores + slots, 1, e.chain, head_hops, 0);
    } else if (e.counts != nullptr) {
      Carry(e.counts + slots, 1, e.chain, head_hops, 0);
    }
  }
}

}  // namespace

cudaError_t MoveAlongChains(DType dtype, int32_t head_dim, int32_t kv_heads, int32_t layers,
                            const ChainEntry* entries, int32_t count, cudaStream_t stream) {
  if (count == 0 || layers == 0) return cudaSuccess;
  if (kv_heads < 1 || kv_heads > 32) return cudaErrorInvalidValue;
  return DispatchDType(dtype, [&](auto type) {
    using T = decltype(type);
    const int row_bytes = head_dim * static_cast<int>(sizeof(T));
    const dim3 grid(count, layers);
    // A thread per moved word and per-slot array, 128 to 512 of them.
    const auto threads = [&](int word_bytes) {
      const int tasks = kv_heads * (2 * row_bytes / word_bytes + 3);
      return std::min(512, std::max(128, (tasks + 31) / 32 * 32));
    };
    // Rows are 16-byte aligned when their size is a multiple of 16 (torch's storage is); head
    // dims are even, so rows of 16-bit types are always a multiple of 4 bytes.
    if (row_bytes % 16 == 0) {
      ChainKernel<T, uint4><<<grid, threads(16), 0, stream>>>(row_bytes / 16, kv_heads, entries);
    } else if (row_bytes % 4 == 0) {
      ChainKernel<T, uint32_t><<<grid, threads(4), 0, stream>>>(row_bytes / 4, kv_heads, entries);
    } else {
      return cudaErrorInvalidValue;
    }
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
