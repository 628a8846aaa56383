// DecodeAttention's split kernel on tensor cores, for bf16/f16 caches with head dims 64 and 128
// (decode_split.cuh). The G query heads of a KV head are the first G rows of a 16-row mma operand
// (the other rows are zero: the tensor cores have the throughput to spare, and the kernel is
// bound by the bytes of K and V). Tiles arrive as in the CUDA-core kernel (cp.async, kStages
// deep), in a swizzled layout so ldmatrix reads them without bank conflicts; IN-CACHE keys are
// rotated in shared memory by one pass over the tile before the warps read it, with each key's
// cos/sin row read from the table (which stays in L2). Each warp takes 8
// keys at a time: S = Q·Kᵀ (m16n8k16), an online softmax per row, O += P·V (m16n8k8, P from S's
// accumulator registers as FlashAttention-2 does). The block then merges its warps.
#include "kernels/decode_split.cuh"
#include "kernels/mma.cuh"

namespace kvserve::kernels {
namespace {

// Chunk c (16 bytes) of row r of a tile sits at chunk c ^ (r % 8) of the row, so the 8 rows an
// ldmatrix reads fall in 8 different bank groups.
__device__ __forceinline__ int Swizzle(int row, int chunk) { return chunk ^ (row & 7); }

// Two elements of T in one register, and the packed ops on them.
template <typename T>
struct Pair;
template <>
struct Pair<__nv_bfloat16> {
  using Type = __nv_bfloat162;
  static __device__ __forceinline__ Type Lows(Type a, Type b) { return __lows2bfloat162(a, b); }
  static __device__ __forceinline__ Type Highs(Type a, Type b) { return __highs2bfloat162(a, b); }
};
template <>
struct Pair<__half> {
  using Type = __half2;
  static __device__ __forceinline__ Type Lows(Type a, Type b) { return __lows2half2(a, b); }
  static __device__ __forceinline__ Type Highs(Type a, Type b) { return __highs2half2(a, b); }
};

// Rotates the keys of one tile, whose first key is `first`, in place by their slots' ranks
// (SlotRank); `rope_table` holds each rank's (cos, sin) pairs. Rows at or past `end` stay as they
// are.
// Packed 16-bit multiplies and adds (.rn: never contracted into an fma) each round their exact
// result once, which is what RotatePair in rope_append.cu does in float32 for 16-bit T (an exact
// product, a sum rounded twice only where the smaller term is far below half a unit of T).
template <typename T, int D>
__device__ __forceinline__ void RotateTile(T* keys, const T* rope_table, int first, int end,
                                           const DecodeSequence& s) {
  using P = Pair<T>;
  using T2 = typename P::Type;
  constexpr int kHalfChunks = D / 16, kKeys = kTileBytes / (D * 2);
  for (int task = threadIdx.x; task < kKeys * kHalfChunks; task += kSplitThreads) {
    const int row = task / kHalfChunks, c = task % kHalfChunks;
    uint4* low = reinterpret_cast<uint4*>(keys + row * D + Swizzle(row, c) * 8);
    uint4* high = reinterpret_cast<uint4*>(keys + row * D + Swizzle(row, c + kHalfChunks) * 8);
    // Frequencies 8c..8c+7: dims 8c.. of the first half pair with dims 8c + D/2.. of the second.
    const int key = first + row;
    if (key >= end) continue;
    const uint4* table =
        reinterpret_cast<const uint4*>(rope_table + int64_t{SlotRank(key, s)} * D + 16 * c);
    uint4 x1_raw = *low, x2_raw = *high, cs_raw[2] = {table[0], table[1]};
    const T2* x1 = reinterpret_cast<const T2*>(&x1_raw);
    const T2* x2 = reinterpret_cast<const T2*>(&x2_raw);
    const T2* cs = reinterpret_cast<const T2*>(cs_raw);  // (cos, sin) of frequency 8c + j at j
    uint4 o1_raw, o2_raw;
    T2* o1 = reinterpret_cast<T2*>(&o1_raw);
    T2* o2 = reinterpret_cast<T2*>(&o2_raw);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const T2 cosine = P::Lows(cs[2 * j], cs[2 * j + 1]);
      const T2 sine = P::Highs(cs[2 * j], cs[2 * j + 1]);
      o1[j] = __hsub2_rn(__hmul2_rn(x1[j], cosine), __hmul2_rn(x2[j], sine));
      o2[j] = __hadd2_rn(__hmul2_rn(x2[j], cosine), __hmul2_rn(x1[j], sine));
    }
    *low = o1_raw;
    *high = o2_raw;
  }
}

// Per stage a key tile and a value tile (the rotation reads its cos/sin rows from the table, which
// stays in L2): 48 KiB, so four blocks fit on an SM, which keeps the bytes in flight up.
constexpr int kMmaSharedBytes = kStages * 2 * kTileBytes;

template <typename T, int D, int G>
__global__ void __launch_bounds__(kSplitThreads, 4)
    MmaSplitKernel(DecodeShape shape, const DecodeSequence* sequences, const int32_t* lengths,
                   int32_t layer, const T* queries, T* out, const T* rope_table,
                   DecodeWorkspace workspace, float scale_log2) {
  static_assert(sizeof(T) == 2 && (D == 64 || D == 128) && G <= 8, "unsupported shape");
  constexpr int kChunks = D / 8;                        // 16-byte chunks per row
  constexpr int kKeys = kTileBytes / (D * 2);           // keys per tile: 32 or 64
  constexpr int kWarpBlocks = kKeys / kSplitWarps / 8;  // 8-key blocks per warp and tile
  constexpr int kTileElems = kTileBytes / 2;
  constexpr int kStageElems = 2 * kTileElems;

  const int split = blockIdx.x, kv_head = blockIdx.y, b = blockIdx.z;
  const DecodeSequence& s = sequences[b];
  int begin, end, length;
  if (!SplitRange(shape, s, lengths, layer, workspace, split, b, begin, end, length)) return;
  // Shifted sinks sit in the first slots: only a tile that holds one needs the rotation pass.
  const int rotated_end = RotatedEnd(s, end);

  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* shared = reinterpret_cast<T*>(shared_raw);
  const T* key_base =
      static_cast<const T*>(s.keys) + layer * s.layer_stride + kv_head * s.key_head_stride;
  const T* value_base =
      static_cast<const T*>(s.values) + layer * s.layer_stride + kv_head * s.value_head_stride;

  const int tiles = (end - begin + kKeys - 1) / kKeys;
  auto load_tile = [&](int t) {
    LoadTile<T, D, false>(shared, t, begin, end, key_base, value_base, rope_table, s, false,
                          [](int row, int chunk) { return row * D + Swizzle(row, chunk) * 8; });
  };

  // The queries as a 16-row A operand, staged in the last stage's buffer, which the pipeline
  // first fills after the first barrier of the loop.
  T* query_tile = shared + (kStages - 1) * kStageElems;
  const T* q = queries + (static_cast<int64_t>(b) * shape.num_heads + kv_head * G) * D;
  for (int c = threadIdx.x; c < 16 * kChunks; c += kSplitThreads) {
    const int row = c / kChunks, chunk = c % kChunks;
    const uint4 v =
        row < G ? *reinterpret_cast<const uint4*>(q + row * D + chunk * 8) : make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(query_tile + row * D + Swizzle(row, chunk) * 8) = v;
  }
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < tiles) load_tile(t);
    CopyAsyncCommit();
  }
  __syncthreads();

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int group = lane / 4, pair = lane % 4;  // fragment row and column pair
  // A fragments of Q for each 16-dim step: matrices (rows 0-7 | 8-15) x (dims lo | hi).
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int step = 0; step < D / 16; ++step) {
    const int row = (lane / 8) % 2 * 8 + lane % 8, chunk = 2 * step + lane / 16;
    LoadMatrices<false>(qa[step], SharedAddress(query_tile + row * D + Swizzle(row, chunk) * 8));
  }

  // Online softmax state of rows `group` and `group + 8` (only rows < G are real heads).
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0, 0};
  float* scratch =
      s.key_mass == nullptr ? nullptr : s.logit_scratch + kv_head * G * s.scratch_stride;

  for (int t = 0; t < tiles; ++t) {
    CopyAsyncWait<kStages - 2>();  // this thread's copies of tile t have landed
    __syncthreads();               // everyone's have, and nobody still reads tile t - 1's stage
    // Tile t + 2 goes to tile t - 1's stage, free since the barrier; issued before the rotation
    // so the rotation's pass does not hold back the pipeline.
    if (t + kStages - 1 < tiles) load_tile(t + kStages - 1);
    CopyAsyncCommit();
    T* keys = shared + (t % kStages) * kStageElems;
    const T* values = keys + kTileElems;
    if (begin + t * kKeys < rotated_end) {  // the same for the whole block
      RotateTile<T, D>(keys, rope_table, begin + t * kKeys, min(end, rotated_end), s);
      __syncthreads();
    }
#pragma unroll
    for (int block = 0; block < kWarpBlocks; ++block) {
      const int row0 = (warp * kWarpBlocks + block) * 8;  // the block's first row in the tile
      const int first = begin + t * kKeys + row0;
      float sc[4] = {0, 0, 0, 0};  // S: rows group / group + 8, keys first + 2 pair + {0, 1}
#pragma unroll
      for (int step = 0; step < D / 16; step += 2) {
        // Matrices: keys row0..row0+7 x chunks 2 step .. 2 step + 3: B of two 16-dim steps.
        uint32_t kb[4];
        const int row = row0 + lane % 8, chunk = 2 * step + lane / 8;
        LoadMatrices<false>(kb, SharedAddress(keys + row * D + Swizzle(row, chunk) * 8));
        Mma<T>(sc, qa[step], kb[0], kb[1]);
        Mma<T>(sc, qa[step + 1], kb[2], kb[3]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        sc[i] = first + 2 * pair + i % 2 < end ? sc[i] * scale_log2 : -INFINITY;
      }
      if (scratch != nullptr && group < G) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int key = first + 2 * pair + i;
          if (key < end) scratch[group * s.scratch_stride + key] = sc[i];
        }
      }
      float p[4];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float block_max = fmaxf(sc[2 * r], sc[2 * r + 1]);
        block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, 1));
        block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, 2));
        const float m_new = fmaxf(m[r], block_max);
        // No valid key in this row yet: nothing to weigh.
        const float correction = m_new == -INFINITY ? 1.f : exp2f(m[r] - m_new);
        p[2 * r] = m_new == -INFINITY ? 0.f : exp2f(sc[2 * r] - m_new);
        p[2 * r + 1] = m_new == -INFINITY ? 0.f : exp2f(sc[2 * r + 1] - m_new);
        float row_sum = p[2 * r] + p[2 * r + 1];
        row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 1);
        row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 2);
        l[r] = l[r] * correction + row_sum;
        m[r] = m_new;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          o[j][2 * r] *= correction;
          o[j][2 * r + 1] *= correction;
        }
      }
      const uint32_t pa0 = Pack<T>(p[0], p[1]), pa1 = Pack<T>(p[2], p[3]);
#pragma unroll
      for (int j = 0; j < D / 8; j += 4) {
        // Matrices: keys row0..row0+7 x dims chunks j..j+3, transposed: B of four 8-dim blocks.
        uint32_t vb[4];
        const int row = row0 + lane % 8, chunk = j + lane / 8;
        LoadMatrices<true>(vb, SharedAddress(values + row * D + Swizzle(row, chunk) * 8));
#pragma unroll
        for (int i = 0; i < 4; ++i) Mma8<T>(o[j + i], pa0, pa1, vb[i]);
      }
    }
  }

  // The tiles' shared memory is free once every copy has landed and every warp has left the loop.
  CopyAsyncWait<0>();
  __syncthreads();
  float* warp_m = reinterpret_cast<float*>(shared_raw);  // [kSplitWarps][G]
  float* warp_l = warp_m + kSplitWarps * G;
  float* warp_acc = warp_l + kSplitWarps * G;  // [kSplitWarps][G][D]
  if (group < G) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      warp_acc[(warp * G + group) * D + 8 * j + 2 * pair] = o[j][0];
      warp_acc[(warp * G + group) * D + 8 * j + 2 * pair + 1] = o[j][1];
    }
    if (pair == 0) {
      warp_m[warp * G + group] = m[0];
      warp_l[warp * G + group] = l[0];
    }
  }
  __syncthreads();
  WriteSplitPartial<T, D, G>(warp_m, warp_l, warp_acc, shape, workspace, b, kv_head, split, s,
                             length, out);
}

template <typename T, int D, int G>
cudaError_t Launch(const DecodeShape& shape, const DecodeSequence* sequences,
                   const int32_t* lengths, int32_t layer, const void* queries, void* out,
                   const void* rope_table, const DecodeWorkspace& workspace, cudaStream_t stream) {
  // Above 48 KiB of dynamic shared memory a kernel must opt in; once per instantiation.
  static const cudaError_t opted_in = cudaFuncSetAttribute(
      MmaSplitKernel<T, D, G>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMmaSharedBytes);
  if (opted_in != cudaSuccess) return opted_in;
  const float scale_log2 = kLog2e / sqrtf(static_cast<float>(D));
  const dim3 grid(workspace.max_splits, shape.kv_heads, shape.batch);
  MmaSplitKernel<T, D, G><<<grid, kSplitThreads, kMmaSharedBytes, stream>>>(
      shape, sequences, lengths, layer, static_cast<const T*>(queries), static_cast<T*>(out),
      static_cast<const T*>(rope_table), workspace, scale_log2);
  return cudaGetLastError();
}

template <typename T, typename... Args>
cudaError_t DispatchDim(int32_t head_dim, int32_t group, const Args&... args) {
  return DispatchGroup(group, [&](auto g) {
    constexpr int G = decltype(g)::value;
    return head_dim == 64 ? Launch<T, 64, G>(args...) : Launch<T, 128, G>(args...);
  });
}

}  // namespace

bool MmaSplitTakes(DType dtype, int32_t head_dim, int32_t group) {
  return dtype != DType::kFloat32 && (head_dim == 64 || head_dim == 128) &&
         (group == 1 || group == 2 || group == 4 || group == 8);
}

cudaError_t LaunchMmaSplit(const DecodeShape& shape, const DecodeSequence* sequences,
                           const int32_t* lengths, int32_t layer, const void* queries, void* out,
                           const void* rope_table, const DecodeWorkspace& workspace,
                           cudaStream_t stream) {
  const int32_t group = shape.num_heads / shape.kv_heads;
  if (!MmaSplitTakes(shape.dtype, shape.head_dim, group)) return cudaErrorInvalidValue;
  if (shape.dtype == DType::kBFloat16) {
    return DispatchDim<__nv_bfloat16>(shape.head_dim, group, shape, sequences, lengths, layer,
                                      queries, out, rope_table, workspace, stream);
  }
  return DispatchDim<__half>(shape.head_dim, group, shape, sequences, lengths, layer, queries, out,
                             rope_table, workspace, stream);
}

}  // namespace kvserve::kernels
