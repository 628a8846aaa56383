// PrefillAttention (prefill_attention.h) on the tensor cores, FlashAttention-2 style with the query
// heads of a KV group packed into one block (prefill_and_heads.md §4.3, FA3's "PackGQA"): a block
// of W warps owns 32 W rows, each a (query, head) pair — P heads of one KV head times 32 W / P
// queries of one segment — so every key tile it stages serves all P heads (selection is per KV
// head, so the rows share one key list). Each warp owns 32 rows (two 16-row MMA tiles), so every
// K or V fragment it reads from shared memory feeds four MMAs, and keeps an online softmax per
// row; the block's queries sit in shared memory. The key list (the segment's selected blocks,
// then a contiguous causal range) is walked in tiles of 32 keys that a three-stage cp.async
// pipeline stages in padded shared memory (two blocks share an SM), read back with ldmatrix
// without bank conflicts. Only tiles that may hold an absent or a future key pay for the mask.
#include "kernels/device_math.cuh"
#include "kernels/mma.cuh"
#include "kernels/prefill_attention.h"

namespace kvserve::kernels {
namespace {

constexpr int kKeys = 32;         // keys per shared-memory tile (64 would spill registers)
constexpr int kPad = 8;           // elements of padding per shared row: rows 16 bytes apart mod 128
constexpr int kMaxPacked = 8;     // query heads per block at most
constexpr int kSegmentTile = 64;  // segments are multiples of it; a block holds <= 64 queries
constexpr int kTiles = 2;         // 16-row MMA tiles per warp

// How the rows of a block map to (query, head): row r is query q0 + r / heads of head
// head0 + r % heads (heads of one query adjacent, as they sit in memory).
struct Packing {
  int heads = 1;  // a power of two dividing the group size
  int log2_heads = 0;
  int queries = 0;      // per block: rows / heads
  int tiles = 0;        // query tiles: ceil(n / queries)
  int head_groups = 0;  // num_heads / heads
  int log2_block = -1;  // log2 of the block size when it is a power of two
};

template <int D, int Warps>
struct Config {
  static constexpr int kThreads = 32 * Warps;
  static constexpr int kRows = 16 * kTiles * Warps;
  static constexpr int kStride = D + kPad;
  static constexpr int kStages = 3;
  static constexpr size_t kTileElements = static_cast<size_t>(kKeys) * kStride;
  static constexpr size_t kSharedBytes =
      (kRows * kStride + kStages * 2 * kTileElements) * 2  // queries, K and V; 2-byte elements
      + kStages * kKeys * sizeof(int);
};

template <typename T, int D, int Warps>
__global__ void __launch_bounds__(32 * Warps, 2)
    PackedPrefillKernel(PrefillAttentionArgs a, Packing p, float scale_log2) {
  using C = Config<D, Warps>;
  constexpr int kThreads = C::kThreads, kStride = C::kStride, kStages = C::kStages;
  constexpr int kRowsPerThread = 2 * kTiles;  // rows g and g + 8 of each of the warp's tiles
  static_assert(sizeof(T) == 2, "bf16 or f16");
  extern __shared__ __align__(16) unsigned char shared[];
  T* queries = reinterpret_cast<T*>(shared);  // [kRows][kStride]
  T* keys = queries + C::kRows * kStride;     // [kStages][kKeys][kStride]
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

  // Each thread copies 16-byte columns of the block's query rows (zeros past the last query);
  // they land with the first key tile.
  constexpr int kChunks = D / 8;
  for (int i = tid; i < C::kRows * kChunks; i += kThreads) {
    const int row = i / kChunks, col = (i % kChunks) * 8;
    const int query = q0 + (row >> p.log2_heads), head = head0 + (row & (p.heads - 1));
    const T* source = q + (static_cast<int64_t>(query < n ? query : 0) * a.num_heads + head) * D;
    CopyAsync16(queries + row * kStride + col, source + col, query < n);
  }
  // This thread's rows: g and g + 8 of the warp's tiles, in the order (tile, half); recomputed
  // where needed rather than held (the kernel is at the register limit).
  auto row_of = [&](int r) { return warp * 16 * kTiles + (r / 2) * 16 + g + (r % 2) * 8; };
  auto query_of = [&](int r) { return q0 + (row_of(r) >> p.log2_heads); };

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
      // A power-of-two block size (the spec's 32) shifts instead of dividing: this runs for every
      // copied row.
      const int b = p.log2_block >= 0 ? i >> p.log2_block : i / a.block_size;
      const int index = block_list[b] * a.block_size + (i - b * a.block_size) - a.key_offset;
      return index < 0 ? -1 : index;
    }
    const int i = begin + (t - selected_tiles) * kKeys + slot;
    return i < end ? i : -1;
  };
  // Each thread copies the same 16-byte column of kKeys / kRowsPerPass rows of K and of V.
  constexpr int kRowsPerPass = kThreads / kChunks;
  static_assert(kKeys % kRowsPerPass == 0, "whole passes");
  const int load_row = tid / kChunks, load_col = (tid % kChunks) * 8;
  auto load_tile = [&](int t, int stage) {
    T* k_stage = keys + stage * C::kTileElements;
    T* v_stage = values + stage * C::kTileElements;
#pragma unroll 2  // two passes at a time, as benchmarked (64-key tiles spilled when fully unrolled)
    for (int pass = 0; pass < kKeys / kRowsPerPass; ++pass) {
      const int row = load_row + pass * kRowsPerPass, index = key_at(t, row);
      const int64_t offset = static_cast<int64_t>(index < 0 ? 0 : index) * D + load_col;
      CopyAsync16(k_stage + row * kStride + load_col, k_base + offset, index >= 0);
      CopyAsync16(v_stage + row * kStride + load_col, v_base + offset, index >= 0);
      if (load_col == 0) key_index[stage * kKeys + row] = index;
    }
  };

  float m[kRowsPerThread], l[kRowsPerThread];  // m in log2 units, scaled
  float o[kTiles][D / 8][4];
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) m[r] = -INFINITY, l[r] = 0.f;
#pragma unroll
  for (int mt = 0; mt < kTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.f;
  }

  // ldmatrix row addresses of this lane. Q (the A fragment of k-step ks): matrix j = lane / 8 is
  // rows 8 (j % 2) + (lane % 8), dims 16 ks + 8 (j / 2). K (S = Q Kᵀ): matrix j is keys 8 (nt + j
  // / 2) + (lane % 8), dims 16 ks + 8 (j % 2): the B fragments of key tiles nt and nt + 1. V (O +=
  // P V), transposed: matrix j is keys 16 kk + 8 (j % 2) + (lane % 8), dims 16 dp + 8 (j / 2): the
  // B fragments of dim tiles 2 dp and 2 dp + 1.
  constexpr uint32_t kTileBytes = static_cast<uint32_t>(C::kTileElements * sizeof(T));
  const uint32_t q_lane =
      SharedAddress(queries) +
      ((warp * 16 * kTiles + (lane & 15)) * kStride + (lane >> 4) * 8) * sizeof(T);
  const uint32_t k_lane =
      SharedAddress(keys) +
      (((lane & 7) + (lane >> 4) * 8) * kStride + ((lane >> 3) & 1) * 8) * sizeof(T);
  const uint32_t v_lane =
      SharedAddress(values) +
      (((lane & 7) + ((lane >> 3) & 1) * 8) * kStride + (lane >> 4) * 8) * sizeof(T);
  const int block_first_query = first_index + q0;  // the earliest query index of the block

  // Pipeline: tiles t + 1 .. t + kStages - 1 are in flight while tile t is computed.
#pragma unroll
  for (int stage = 0; stage < kStages - 1; ++stage) {
    if (stage < tiles) load_tile(stage, stage);
    CopyAsyncCommit();  // the queries land with the first group
  }
  for (int t = 0; t < tiles; ++t) {
    CopyAsyncWait<kStages - 2>();  // this thread's copies of tile t have landed
    __syncthreads();               // everyone's have; and tile t - 1's stage is no longer read
    if (t + kStages - 1 < tiles) load_tile(t + kStages - 1, (t + kStages - 1) % kStages);
    CopyAsyncCommit();  // possibly empty: keeps the group count in step
    const int stage = t % kStages;

    // S = Q Kᵀ for this warp's 32 rows and the tile's keys.
    float s[kTiles][kKeys / 8][4];
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) {
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt)
        s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
    }
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t qf[kTiles][4];
#pragma unroll
      for (int mt = 0; mt < kTiles; ++mt) {
        LoadMatrices<false>(qf[mt], q_lane + (mt * 16 * kStride + ks * 16) * sizeof(T));
      }
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; nt += 2) {
        uint32_t b[4];
        LoadMatrices<false>(b,
                            k_lane + stage * kTileBytes + (nt * 8 * kStride + ks * 16) * sizeof(T));
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
          Mma<T>(s[mt][nt], qf[mt], b[0], b[1]);
          Mma<T>(s[mt][nt + 1], qf[mt], b[2], b[3]);
        }
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
#pragma unroll
          for (int mt = 0; mt < kTiles; ++mt) {
            if (key < 0 || key > first_index + query_of(mt * 2 + e / 2)) s[mt][nt][e] = -INFINITY;
          }
        }
      }
    }
    // The online softmax of the thread's rows (each spread over the 4 lanes of its group).
    float correction[kRowsPerThread];
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) {
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) tile_max[e / 2] = fmaxf(tile_max[e / 2], s[mt][nt][e]);
      }
      float base[2], sum[2] = {0.f, 0.f};
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = mt * 2 + half;
        tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 1));
        tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 2));
        const float m_new = fmaxf(m[r], tile_max[half] * scale_log2);
        base[half] = m_new == -INFINITY ? 0.f : m_new;  // a row with no visible key yet
        correction[r] = exp2f(m[r] - base[half]);
        m[r] = m_new;
      }
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[mt][nt][e] = exp2f(fmaf(s[mt][nt][e], scale_log2, -base[e / 2]));
          sum[e / 2] += s[mt][nt][e];
        }
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        l[mt * 2 + half] = l[mt * 2 + half] * correction[mt * 2 + half] + sum[half];
      }
      // Once the rows' maxima settle most tiles change none of them: the warp then skips the
      // rescale (a multiply by 1, so the result is the same).
      if (__any_sync(0xffffffffu, correction[mt * 2] != 1.f || correction[mt * 2 + 1] != 1.f)) {
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          o[mt][dt][0] *= correction[mt * 2];
          o[mt][dt][1] *= correction[mt * 2];
          o[mt][dt][2] *= correction[mt * 2 + 1];
          o[mt][dt][3] *= correction[mt * 2 + 1];
        }
      }
    }
    // O += P V: the S accumulators of key tiles 2 kk and 2 kk + 1 are the A fragment of keys
    // [16 kk, 16 kk + 16).
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t pf[kTiles][4];
#pragma unroll
      for (int mt = 0; mt < kTiles; ++mt) {
        pf[mt][0] = Pack<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pf[mt][1] = Pack<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pf[mt][2] = Pack<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pf[mt][3] = Pack<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        LoadMatrices<true>(b,
                           v_lane + stage * kTileBytes + (kk * 16 * kStride + dp * 16) * sizeof(T));
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
          Mma<T>(o[mt][2 * dp], pf[mt], b[0], b[1]);
          Mma<T>(o[mt][2 * dp + 1], pf[mt], b[2], b[3]);
        }
      }
    }
  }

  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int query = query_of(r);
    if (query >= n) continue;
    const int head = head0 + (row_of(r) & (p.heads - 1));
    const float inverse = sum > 0 ? 1.f / sum : 0.f;
    T* destination = out + (static_cast<int64_t>(query) * a.num_heads + head) * D + 2 * tig;
    const int mt = r / 2, e = (r % 2) * 2;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(destination + dt * 8) =
          Pack<T>(o[mt][dt][e] * inverse, o[mt][dt][e + 1] * inverse);
    }
  }
}

template <typename T, int D, int Warps>
cudaError_t LaunchPacked(const PrefillAttentionArgs& a, Packing p, cudaStream_t stream) {
  using C = Config<D, Warps>;
  p.queries = C::kRows / p.heads;
  p.tiles = (a.queries + p.queries - 1) / p.queries;
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
  // The most heads (a power of two up to 8) that divide the group; alone, a head takes 2 warps so
  // that a block still holds at most kSegmentTile queries.
  const int group = a.num_heads / a.kv_heads;
  Packing p;
  while (p.heads < kMaxPacked && group % (2 * p.heads) == 0) {
    p.heads *= 2;
    ++p.log2_heads;
  }
  const bool wide = p.heads > 1;
  p.head_groups = a.num_heads / p.heads;
  if (a.block_size > 0 && (a.block_size & (a.block_size - 1)) == 0) {
    p.log2_block = __builtin_ctz(static_cast<unsigned>(a.block_size));
  }
  static_assert(128 / 2 <= kSegmentTile, "a block's queries lie in one segment");
  switch (a.head_dim) {
    case 64:
      return wide ? LaunchPacked<T, 64, 4>(a, p, stream) : LaunchPacked<T, 64, 2>(a, p, stream);
    case 128:
      return wide ? LaunchPacked<T, 128, 4>(a, p, stream) : LaunchPacked<T, 128, 2>(a, p, stream);
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
