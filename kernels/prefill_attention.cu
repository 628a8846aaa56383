// PrefillAttention (prefill_attention.h) on the tensor cores, FlashAttention-2 style with the query
// heads of a KV group packed into one block (prefill_and_heads.md §4.3, FA3's "PackGQA"): a block
// of W warps owns 16 W rows, each a (query, head) pair — P heads of one KV head times 16 W / P
// queries of one segment — so every key tile it stages serves all P heads (selection is per KV
// head, so the rows share one key list). Each warp keeps its 16 rows' queries in registers and an
// online softmax per row; the key list (the segment's selected blocks, then a contiguous causal
// range) is walked in tiles of 64 keys that a kStages-deep cp.async pipeline stages in padded
// shared memory, read back with ldmatrix without bank conflicts. Only tiles that may hold an
// absent or a future key pay for the mask.
#include "kernels/device_math.cuh"
#include "kernels/mma.cuh"
#include "kernels/prefill_attention.h"

namespace kvserve::kernels {
namespace {

constexpr int kKeys = 64;         // keys per shared-memory tile
constexpr int kPad = 8;           // elements of padding per shared row: rows 16 bytes apart mod 128
constexpr int kMaxPacked = 8;     // query heads per block at most
constexpr int kSegmentTile = 64;  // segments are multiples of it; a block holds <= 64 queries

// How the rows of a block map to (query, head): row r is query q0 + r / heads of head
// head0 + r % heads (heads of one query adjacent, as they sit in memory).
struct Packing {
  int heads = 1;  // a power of two dividing the group size
  int log2_heads = 0;
  int queries = 0;      // per block: rows / heads
  int tiles = 0;        // query tiles: ceil(n / queries)
  int head_groups = 0;  // num_heads / heads
};

template <int D, int Warps>
struct Config {
  static constexpr int kThreads = 32 * Warps;
  static constexpr int kStride = D + kPad;
  static constexpr int kStages = 3;
  // ptxas takes ~190 (d 64) to ~240 (d 128) registers: 8 warps per SM either way.
  static constexpr int kMinBlocks = Warps == 8 ? 1 : 2;
  static constexpr size_t kTileElements = static_cast<size_t>(kKeys) * kStride;
  static constexpr size_t kSharedBytes =
      kStages * (2 * kTileElements * 2 + kKeys * sizeof(int));  // 2-byte elements
};

template <typename T, int D, int Warps>
__global__ void __launch_bounds__(32 * Warps, (Config<D, Warps>::kMinBlocks))
    PackedPrefillKernel(PrefillAttentionArgs a, Packing p, float scale_log2) {
  using C = Config<D, Warps>;
  constexpr int kThreads = C::kThreads, kStride = C::kStride, kStages = C::kStages;
  static_assert(sizeof(T) == 2, "bf16 or f16");
  extern __shared__ __align__(16) unsigned char shared[];
  T* keys = reinterpret_cast<T*>(shared);  // [kStages][kKeys][kStride]
  T* values = keys + kStages * C::kTileElements;
  int* key_index = reinterpret_cast<int*>(values + kStages * C::kTileElements);  // [kStages][kKeys]

  // Longest tiles first (the latest queries see the most keys), all head groups of one together.
  const int head_group = static_cast<int>(blockIdx.x % p.head_groups);
  const int tile = p.tiles - 1 - static_cast<int>(blockIdx.x / p.head_groups);
  const int head0 = head_group * p.heads;
  const int kv_head = head0 / (a.num_heads / a.kv_heads);
  const int n = a.queries, first_index = a.keys - a.queries;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane >> 2, tig = lane & 3;
  const int q0 = tile * p.queries;
  const T* q = static_cast<const T*>(a.q);
  const T* k_base = static_cast<const T*>(a.k) + kv_head * a.key_head_stride;
  const T* v_base = static_cast<const T*>(a.v) + kv_head * a.value_head_stride;

  // This thread's rows g and g + 8 of the warp's 16.
  int query[2], head[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = warp * 16 + g + half * 8;
    query[half] = q0 + (row >> p.log2_heads);
    head[half] = head0 + (row & (p.heads - 1));
  }
  // The queries as A fragments: rows g and g + 8, columns 2 tig (+1) and 2 tig + 8 (+9).
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int half = r % 2, col = ks * 16 + 2 * tig + (r / 2) * 8;
      qf[ks][r] =
          query[half] < n
              ? *reinterpret_cast<const uint32_t*>(
                    q + (static_cast<int64_t>(query[half]) * a.num_heads + head[half]) * D + col)
              : 0u;
    }
  }

  // The block's key list: the segment's blocks (sparse segments), then [begin, end) causally.
  const int segment = a.blocks == nullptr ? 0 : q0 / a.segment_size;
  const bool dense = a.blocks == nullptr || a.dense[segment] != 0;
  const int last_query = min(q0 + p.queries, n) - 1;
  const int begin = dense ? 0 : first_index + segment * a.segment_size;
  const int end = first_index + last_query + 1;
  const int32_t* block_list =
      dense ? nullptr
            : a.blocks + (static_cast<int64_t>(kv_head) * a.segments + segment) * a.max_blocks;
  int selected_blocks = 0;  // the listed ids before the first -1 (all that are >= 0)
  if (!dense) {
    for (int base = 0; base < a.max_blocks; base += kThreads) {
      const int i = base + tid;
      selected_blocks += __syncthreads_count(i < a.max_blocks && block_list[i] >= 0);
    }
  }
  const int selected_keys = selected_blocks * a.block_size;
  const int selected_tiles = (selected_keys + kKeys - 1) / kKeys;
  const int tiles = selected_tiles + (end - begin + kKeys - 1) / kKeys;

  // Key index of slot `slot` of tile `t`, -1 for none (past the list, or absent from the cache).
  auto key_at = [&](int t, int slot) {
    if (t < selected_tiles) {
      const int i = t * kKeys + slot;
      if (i >= selected_keys) return -1;
      const int b = i / a.block_size;
      const int index = block_list[b] * a.block_size + (i - b * a.block_size) - a.key_offset;
      return index < 0 ? -1 : index;
    }
    const int i = begin + (t - selected_tiles) * kKeys + slot;
    return i < end ? i : -1;
  };
  // Each thread copies the same 16-byte column of kKeys / kRowsPerPass rows of K and of V.
  constexpr int kChunks = D / 8;
  constexpr int kRowsPerPass = kThreads / kChunks;
  static_assert(kKeys % kRowsPerPass == 0, "whole passes");
  const int load_row = tid / kChunks, load_col = (tid % kChunks) * 8;
  auto load_tile = [&](int t, int stage) {
    T* k_stage = keys + stage * C::kTileElements;
    T* v_stage = values + stage * C::kTileElements;
#pragma unroll
    for (int pass = 0; pass < kKeys / kRowsPerPass; ++pass) {
      const int row = load_row + pass * kRowsPerPass, index = key_at(t, row);
      const int64_t offset = static_cast<int64_t>(index < 0 ? 0 : index) * D + load_col;
      CopyAsync16(k_stage + row * kStride + load_col, k_base + offset, index >= 0);
      CopyAsync16(v_stage + row * kStride + load_col, v_base + offset, index >= 0);
      if (load_col == 0) key_index[stage * kKeys + row] = index;
    }
  };

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // m in log2 units, scaled
  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;

  // ldmatrix row addresses of this lane. K (S = Q Kᵀ): matrix j = lane / 8 is keys 8 nt + (lane %
  // 8), dims 32 kk + 8 j: the B fragments of k-steps 2 kk and 2 kk + 1. V (O += P V), transposed:
  // matrix j is keys 16 kk + 8 (j % 2) + (lane % 8), dims 16 dp + 8 (j / 2): the B fragments of
  // dim tiles 2 dp and 2 dp + 1.
  constexpr uint32_t kTileBytes = static_cast<uint32_t>(C::kTileElements * sizeof(T));
  const uint32_t k_lane =
      SharedAddress(keys) + ((lane & 7) * kStride + (lane >> 3) * 8) * sizeof(T);
  const uint32_t v_lane =
      SharedAddress(values) +
      (((lane & 7) + ((lane >> 3) & 1) * 8) * kStride + (lane >> 4) * 8) * sizeof(T);
  const int block_first_query = first_index + q0;  // the earliest query index of the block

  // Pipeline: tiles t + 1 .. t + kStages - 1 are in flight while tile t is computed.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(s, s);
    CopyAsyncCommit();
  }
  for (int t = 0; t < tiles; ++t) {
    CopyAsyncWait<kStages - 2>();  // this thread's copies of tile t have landed
    __syncthreads();               // everyone's have; and tile t - 1's stage is no longer read
    if (t + kStages - 1 < tiles) load_tile(t + kStages - 1, (t + kStages - 1) % kStages);
    CopyAsyncCommit();  // possibly empty: keeps the group count in step
    const int stage = t % kStages;

    // S = Q Kᵀ for this warp's 16 rows and the tile's 64 keys.
    float s[kKeys / 8][4];
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 32; ++kk) {
        uint32_t b[4];
        LoadMatrices<false>(b,
                            k_lane + stage * kTileBytes + (nt * 8 * kStride + kk * 32) * sizeof(T));
        Mma<T>(s[nt], qf[2 * kk], b[0], b[1]);
        Mma<T>(s[nt], qf[2 * kk + 1], b[2], b[3]);
      }
    }
    // Mask: a partial or offset tile of selected blocks, or causal keys past the block's first
    // query (full selected tiles end before the segment: every row sees them).
    const bool masked = t < selected_tiles
                            ? (t + 1) * kKeys > selected_keys || a.key_offset != 0
                            : begin + (t - selected_tiles + 1) * kKeys - 1 > block_first_query;
    if (masked) {
      const int* tile_keys = key_index + stage * kKeys;
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = tile_keys[nt * 8 + 2 * tig + (e & 1)];
          if (key < 0 || key > first_index + query[e / 2]) s[nt][e] = -INFINITY;
        }
      }
    }
    // The online softmax of rows g and g + 8 (each spread over the 4 lanes of its group).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) tile_max[e / 2] = fmaxf(tile_max[e / 2], s[nt][e]);
    }
    float correction[2], base[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 1));
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 2));
      const float m_new = fmaxf(m[half], tile_max[half] * scale_log2);
      base[half] = m_new == -INFINITY ? 0.f : m_new;  // a row with no visible key yet
      correction[half] = exp2f(m[half] - base[half]);
      m[half] = m_new;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(fmaf(s[nt][e], scale_log2, -base[e / 2]));
        sum[e / 2] += s[nt][e];
      }
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) l[half] = l[half] * correction[half] + sum[half];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= correction[0];
      o[dt][1] *= correction[0];
      o[dt][2] *= correction[1];
      o[dt][3] *= correction[1];
    }
    // O += P V: the S accumulators of key tiles 2 kk and 2 kk + 1 are the A fragment of keys
    // [16 kk, 16 kk + 16).
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t pf[4] = {
          Pack<T>(s[2 * kk][0], s[2 * kk][1]), Pack<T>(s[2 * kk][2], s[2 * kk][3]),
          Pack<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]), Pack<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        LoadMatrices<true>(b,
                           v_lane + stage * kTileBytes + (kk * 16 * kStride + dp * 16) * sizeof(T));
        Mma<T>(o[2 * dp], pf, b[0], b[1]);
        Mma<T>(o[2 * dp + 1], pf, b[2], b[3]);
      }
    }
  }

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 1);
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 2);
  }
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    if (query[half] >= n) continue;
    const float inverse = l[half] > 0 ? 1.f / l[half] : 0.f;
    T* row = out + (static_cast<int64_t>(query[half]) * a.num_heads + head[half]) * D + 2 * tig;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(row + dt * 8) =
          Pack<T>(o[dt][half * 2] * inverse, o[dt][half * 2 + 1] * inverse);
    }
  }
}

template <typename T, int D, int Warps>
cudaError_t LaunchPacked(const PrefillAttentionArgs& a, const Packing& p, cudaStream_t stream) {
  using C = Config<D, Warps>;
  auto* kernel = PackedPrefillKernel<T, D, Warps>;
  const cudaError_t error = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(C::kSharedBytes));
  if (error != cudaSuccess) return error;
  const float scale_log2 = kLog2e / sqrtf(static_cast<float>(D));
  kernel<<<p.tiles * p.head_groups, C::kThreads, C::kSharedBytes, stream>>>(a, p, scale_log2);
  return cudaGetLastError();
}

template <typename T>
cudaError_t Launch(const PrefillAttentionArgs& a, cudaStream_t stream) {
  // The most heads (a power of two up to 8) that divide the group; alone, a head takes 4 warps so
  // that a block still holds at most kSegmentTile queries.
  const int group = a.num_heads / a.kv_heads;
  Packing p;
  while (p.heads < kMaxPacked && group % (2 * p.heads) == 0) {
    p.heads *= 2;
    ++p.log2_heads;
  }
  const bool wide = p.heads > 1;
  p.queries = (wide ? 128 : 64) / p.heads;
  p.tiles = (a.queries + p.queries - 1) / p.queries;
  p.head_groups = a.num_heads / p.heads;
  static_assert(128 / 2 <= kSegmentTile, "a block's queries lie in one segment");
  switch (a.head_dim) {
    case 64:
      return wide ? LaunchPacked<T, 64, 8>(a, p, stream) : LaunchPacked<T, 64, 4>(a, p, stream);
    case 128:
      return wide ? LaunchPacked<T, 128, 8>(a, p, stream) : LaunchPacked<T, 128, 4>(a, p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

bool PrefillAttentionSupports(DType dtype, int32_t head_dim, int32_t segment_size) {
  return dtype != DType::kFloat32 && (head_dim == 64 || head_dim == 128) && segment_size >= 0 &&
         segment_size % kSegmentTile == 0;
}

cudaError_t PrefillAttention(const PrefillAttentionArgs& a, cudaStream_t stream) {
  if (a.queries == 0) return cudaSuccess;
  const int32_t segment_size = a.blocks == nullptr ? 0 : a.segment_size;
  if (!PrefillAttentionSupports(a.dtype, a.head_dim, segment_size) || a.kv_heads <= 0 ||
      a.num_heads % a.kv_heads != 0 || a.keys < a.queries ||
      (a.blocks != nullptr && (a.segment_size <= 0 || a.block_size <= 0 || a.dense == nullptr))) {
    return cudaErrorInvalidValue;
  }
  if (a.dtype == DType::kBFloat16) return Launch<__nv_bfloat16>(a, stream);
  return Launch<__half>(a, stream);
}

}  // namespace kvserve::kernels
