// DecodeAttention (decode_step.h), flash-decoding style. Kernel 1: one block per (split of the
// cache, KV head, sequence). The block streams its keys and values through shared memory in tiles
// of 8 KiB (cp.async, kStages deep, so two tiles are in flight while one is computed); for IN-CACHE
// keys the tile's rows of the cos/sin table come the same way. Each warp's lanes take a key in
// groups of head_dim / 8 lanes (one 16-byte access each); each group keeps its own online softmax
// for the G query heads of the KV head, and the block merges them into one partial result.
// 16-bit caches of head dims 64 and 128 take the tensor-core version of kernel 1 instead
// (decode_attention_mma.cu). Kernel 2: one block per (KV head, sequence) merges the splits, writes
// the output and, where asked, the key mass from the raw scores kernel 1 left in the sequence's
// scratch. Where one split holds the whole cache and no key mass is asked (large batches), kernel 1
// writes the output itself and kernel 2 has nothing to do for the row.
#include <algorithm>
#include <cfloat>
#include <type_traits>

#include "kernels/decode_split.cuh"

namespace kvserve::kernels {
namespace {

// The geometry of one head dim and dtype: E elements per 16-byte access, LPK lanes per key, KPW
// keys a warp reads at once, kKeys keys per tile.
template <typename T, int D>
struct TileShape {
  static constexpr int E = kVecElems<T>;
  static_assert(D % E == 0, "head_dim must be a multiple of one 16-byte access");
  static constexpr int LPK = D / E;
  static_assert(LPK >= 1 && LPK <= 32 && 32 % LPK == 0, "unsupported head_dim");
  static constexpr int KPW = 32 / LPK;
  static constexpr int kKeys = kTileBytes / (D * static_cast<int>(sizeof(T)));
  static constexpr int kPasses = kKeys / (kSplitWarps * KPW);  // key groups per warp and tile
  // A lane's dims d0..d0+E hold NF distinct RoPE frequencies (E > D/2 only when one lane holds
  // the whole key), whose (cos, sin) pairs fill kRopeVecs 16-byte accesses of the table row.
  static constexpr int NF = E < D / 2 ? E : D / 2;
  static constexpr int kRopeVecs = 2 * NF / E;
  static_assert(kKeys * LPK == kTileBytes / 16 && kPasses >= 1, "tile does not split evenly");
};

// Rotates this lane's E elements of a key (dims d0..d0+E) by its rank, as RotatePair in
// rope_append.cu does; `cs` holds the (cos, sin) pairs of the lane's frequencies, already rounded
// to T. The partner of dim i is dim i ± D/2: in lane part ^ (LPK / 2), or in this lane when one
// lane holds the whole key. Every lane of the warp must call it (shuffles).
template <typename T, int D>
__device__ __forceinline__ void RotateKey(float (&k)[kVecElems<T>],
                                          const float (&cs)[2 * TileShape<T, D>::NF], int d0) {
  using Shape = TileShape<T, D>;
  constexpr int E = Shape::E, LPK = Shape::LPK;
  float partner[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    if constexpr (LPK >= 2) {
      partner[e] = __shfl_xor_sync(0xffffffffu, k[e], LPK / 2);
    } else {
      partner[e] = k[(e + D / 2) % D];
    }
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int f = LPK >= 2 ? e : e % (D / 2);
    const float c = cs[2 * f], s = cs[2 * f + 1];
    const float rotated = d0 + e < D / 2 ? -partner[e] * s : partner[e] * s;
    k[e] = Round<T>(Round<T>(k[e] * c) + Round<T>(rotated));
  }
}

// Blocks per SM the register budget is set for (the shared memory allows 3).
template <int G>
constexpr int kMinBlocks = G >= 8 ? 2 : 3;

template <typename T, int D, int G>
__global__ void __launch_bounds__(kSplitThreads, kMinBlocks<G>)
    SplitAttentionKernel(DecodeShape shape, const DecodeSequence* sequences, const int32_t* lengths,
                         int32_t layer, const T* queries, T* out, const T* rope_table,
                         DecodeWorkspace workspace, float scale_log2) {
  using Shape = TileShape<T, D>;
  constexpr int E = Shape::E, LPK = Shape::LPK, KPW = Shape::KPW, kKeys = Shape::kKeys;
  constexpr int kTileElems = kTileBytes / static_cast<int>(sizeof(T));

  const int split = blockIdx.x, kv_head = blockIdx.y, b = blockIdx.z;
  const DecodeSequence& s = sequences[b];
  int begin, end, length;
  if (!SplitRange(shape, s, lengths, layer, workspace, split, b, begin, end, length)) return;
  const bool rotate = begin < RotatedEnd(s, end);

  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* shared = reinterpret_cast<T*>(shared_raw);
  const T* key_base =
      static_cast<const T*>(s.keys) + layer * s.layer_stride + kv_head * s.key_head_stride;
  const T* value_base =
      static_cast<const T*>(s.values) + layer * s.layer_stride + kv_head * s.value_head_stride;

  const int tiles = (end - begin + kKeys - 1) / kKeys;
  auto load_tile = [&](int t) {
    LoadTile<T, D, true>(shared, t, begin, end, key_base, value_base, rope_table, s, rotate,
                         [](int row, int chunk) { return row * D + chunk * E; });
  };
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < tiles) load_tile(t);
    CopyAsyncCommit();
  }

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int key_lane = lane / LPK, part = lane % LPK, d0 = part * E;
  // (cos, sin) pairs of frequency f = (d0 % (D/2)) + i sit at elements 2f, 2f + 1 of a table row.
  const int rope_col = 2 * (d0 % (D / 2));
  float qr[G][E];
  const T* q = queries + (static_cast<int64_t>(b) * shape.num_heads + kv_head * G) * D;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    LoadVec<T>(q + g * D + d0, qr[g]);
#pragma unroll
    for (int e = 0; e < E; ++e) qr[g][e] *= scale_log2;
  }
  float m[G], l[G], acc[G][E];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[g][e] = 0;
  }
  float* scratch =
      s.key_mass == nullptr ? nullptr : s.logit_scratch + kv_head * G * s.scratch_stride;

  // U key groups per softmax correction: wide groups need the registers for their queries.
  constexpr int U = G >= 8 ? 2 : 4;
  constexpr int kPasses = Shape::kPasses;
  static_assert(kPasses % U == 0 || kPasses < U, "passes must split into correction groups");
  constexpr int kU = kPasses < U ? kPasses : U;
  for (int t = 0; t < tiles; ++t) {
    CopyAsyncWait<kStages - 2>();  // this thread's copies of tile t have landed
    __syncthreads();               // everyone's have, and nobody still reads tile t - 1's stage
    if (t + kStages - 1 < tiles) load_tile(t + kStages - 1);
    CopyAsyncCommit();
    const T* keys = shared + (t % kStages) * 3 * kTileElems;
    const T* values = keys + kTileElems;
    const T* rope = values + kTileElems;
    const int tile_first = begin + t * kKeys;
#pragma unroll
    for (int pass = 0; pass < kPasses; pass += kU) {
      float dot[kU][G];
      float tile_max[G];
#pragma unroll
      for (int g = 0; g < G; ++g) tile_max[g] = -INFINITY;
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int row = (warp * kPasses + pass + u) * KPW + key_lane;
        const int key = tile_first + row;
        const bool valid = key < end;
        float k[E];
        LoadVec<T>(keys + row * D + d0, k);
        if (rotate) {
          float cs[2 * Shape::NF];
#pragma unroll
          for (int v = 0; v < Shape::kRopeVecs; ++v) {
            float part_cs[E];
            LoadVec<T>(rope + row * D + rope_col + v * E, part_cs);
#pragma unroll
            for (int e = 0; e < E; ++e) cs[v * E + e] = part_cs[e];
          }
          RotateKey<T, D>(k, cs, d0);
        }
#pragma unroll
        for (int g = 0; g < G; ++g) {
          float sum = 0;
#pragma unroll
          for (int e = 0; e < E; ++e) sum += qr[g][e] * k[e];
#pragma unroll
          for (int offset = LPK / 2; offset > 0; offset >>= 1) {
            sum += __shfl_xor_sync(0xffffffffu, sum, offset);
          }
          dot[u][g] = valid ? sum : -INFINITY;
          tile_max[g] = fmaxf(tile_max[g], dot[u][g]);
        }
        if (scratch != nullptr && valid && part == 0) {
#pragma unroll
          for (int g = 0; g < G; ++g) scratch[g * s.scratch_stride + key] = dot[u][g];
        }
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float m_new = fmaxf(m[g], tile_max[g]);
        if (m_new == -INFINITY) continue;              // no valid key for this lane group yet
        const float correction = exp2f(m[g] - m_new);  // 0 while m was -inf
        l[g] *= correction;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[g][e] *= correction;
        m[g] = m_new;
      }
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int row = (warp * kPasses + pass + u) * KPW + key_lane;
        float v[E];
        LoadVec<T>(values + row * D + d0, v);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          // Invalid keys weigh 0 (m may still be -inf for a group that has seen none).
          const float p = dot[u][g] == -INFINITY ? 0.f : exp2f(dot[u][g] - m[g]);
          l[g] += p;
#pragma unroll
          for (int e = 0; e < E; ++e) acc[g][e] += p * v[e];
        }
      }
    }
  }

  // Merge the key groups of the warp (lanes that hold the same dims), then the warps.
#pragma unroll
  for (int offset = LPK; offset < 32; offset <<= 1) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float m_other = __shfl_xor_sync(0xffffffffu, m[g], offset);
      const float l_other = __shfl_xor_sync(0xffffffffu, l[g], offset);
      const float m_new = fmaxf(m[g], m_other);
      const float mine = m[g] == -INFINITY ? 0.f : exp2f(m[g] - m_new);
      const float theirs = m_other == -INFINITY ? 0.f : exp2f(m_other - m_new);
      l[g] = l[g] * mine + l_other * theirs;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const float acc_other = __shfl_xor_sync(0xffffffffu, acc[g][e], offset);
        acc[g][e] = acc[g][e] * mine + acc_other * theirs;
      }
      m[g] = m_new;
    }
  }
  // The tiles' shared memory is free once every copy has landed and every warp has left the loop.
  CopyAsyncWait<0>();
  __syncthreads();
  float* warp_m = reinterpret_cast<float*>(shared_raw);  // [kSplitWarps][G]
  float* warp_l = warp_m + kSplitWarps * G;              // [kSplitWarps][G]
  float* warp_acc = warp_l + kSplitWarps * G;            // [kSplitWarps][G][D]
  if (key_lane == 0) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int e = 0; e < E; ++e) warp_acc[(warp * G + g) * D + d0 + e] = acc[g][e];
      if (part == 0) {
        warp_m[warp * G + g] = m[g];
        warp_l[warp * G + g] = l[g];
      }
    }
  }
  __syncthreads();
  WriteSplitPartial<T, D, G>(warp_m, warp_l, warp_acc, shape, workspace, b, kv_head, split, s,
                             length, out);
}

template <typename T, int D, int G>
__global__ void __launch_bounds__(kSplitThreads)
    MergeSplitsKernel(DecodeShape shape, const DecodeSequence* sequences, const int32_t* lengths,
                      int32_t layer, T* out, DecodeWorkspace workspace) {
  const int kv_head = blockIdx.x, b = blockIdx.y;
  const DecodeSequence& s = sequences[b];
  const int length = s.keys == nullptr ? 0 : lengths[static_cast<int64_t>(layer) * shape.batch + b];
  T* out_row = HeadGroupRows<D, G>(out, shape, b, kv_head);
  if (length == 0) {
    for (int i = threadIdx.x; i < G * D; i += kSplitThreads) out_row[i] = FromFloat<T>(0.f);
    return;
  }
  if (SplitWritesOutput(length, s, workspace.max_splits)) return;
  const int splits = NumSplits(length, workspace.max_splits);
  __shared__ float lse[G];  // log2 of each query head's softmax denominator, in scaled units
  for (int i = threadIdx.x; i < G * D; i += kSplitThreads) {
    const int g = i / D, dim = i % D;
    const int64_t first =
        ((static_cast<int64_t>(b) * shape.kv_heads + kv_head) * G + g) * workspace.max_splits;
    float m_all = -INFINITY;
    for (int k = 0; k < splits; ++k) m_all = fmaxf(m_all, workspace.partial_stats[(first + k) * 2]);
    float value = 0, sum = 0;
    for (int k = 0; k < splits; ++k) {
      const float f = exp2f(workspace.partial_stats[(first + k) * 2] - m_all);
      value += workspace.partial_out[(first + k) * D + dim] * f;
      sum += workspace.partial_stats[(first + k) * 2 + 1] * f;
    }
    out_row[i] = FromFloat<T>(value / sum);
    if (dim == 0) lse[g] = m_all + log2f(sum);
  }
  if (s.key_mass == nullptr) return;
  __syncthreads();
  const float* scratch = s.logit_scratch + kv_head * G * s.scratch_stride;
  float* mass = s.key_mass + layer * s.mass_layer_stride + kv_head * s.mass_head_stride;
  for (int slot = threadIdx.x; slot < length; slot += kSplitThreads) {
    float total = 0;  // the sum over the group's heads, or their max where the policy asks
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float p = exp2f(scratch[g * s.scratch_stride + slot] - lse[g]);
      total = s.key_mass_group_max ? fmaxf(total, p) : total + p;
    }
    mass[slot] = total;
  }
}

template <typename T, int D, int G>
cudaError_t Launch(const DecodeShape& shape, const DecodeSequence* sequences,
                   const int32_t* lengths, int32_t layer, const void* queries, void* out,
                   const void* rope_table, const DecodeWorkspace& workspace, cudaStream_t stream) {
  if (MmaSplitTakes(shape.dtype, D, G)) {
    const cudaError_t e = LaunchMmaSplit(shape, sequences, lengths, layer, queries, out, rope_table,
                                         workspace, stream);
    if (e != cudaSuccess) return e;
  } else {
    // Above 48 KiB of dynamic shared memory a kernel must opt in; once per instantiation.
    static const cudaError_t opted_in =
        cudaFuncSetAttribute(SplitAttentionKernel<T, D, G>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, kSplitSharedBytes);
    if (opted_in != cudaSuccess) return opted_in;
    const float scale_log2 = kLog2e / sqrtf(static_cast<float>(D));
    const dim3 split_grid(workspace.max_splits, shape.kv_heads, shape.batch);
    SplitAttentionKernel<T, D, G><<<split_grid, kSplitThreads, kSplitSharedBytes, stream>>>(
        shape, sequences, lengths, layer, static_cast<const T*>(queries), static_cast<T*>(out),
        static_cast<const T*>(rope_table), workspace, scale_log2);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  const dim3 merge_grid(shape.kv_heads, shape.batch);
  MergeSplitsKernel<T, D, G><<<merge_grid, kSplitThreads, 0, stream>>>(
      shape, sequences, lengths, layer, static_cast<T*>(out), workspace);
  return cudaGetLastError();
}

}  // namespace

bool DecodeAttentionSupports(int32_t head_dim, int32_t group) {
  const bool dim_ok = head_dim == 8 || head_dim == 64 || head_dim == 128;
  const bool group_ok = group == 1 || group == 2 || group == 4 || group == 8;
  return dim_ok && group_ok;
}

DecodeWorkspaceSize DecodeWorkspaceFloats(const DecodeShape& shape, int32_t max_splits) {
  const int64_t rows = static_cast<int64_t>(shape.batch) * shape.num_heads * max_splits;
  return {rows * shape.head_dim, rows * 2};
}

int32_t DecodeMaxSplits(const DecodeShape& shape, int32_t multiprocessors) {
  // About eight blocks per SM (three are resident at once): short tails between waves.
  const int64_t blocks = std::max<int64_t>(1, static_cast<int64_t>(shape.batch) * shape.kv_heads);
  const int64_t wanted = (8 * static_cast<int64_t>(multiprocessors) + blocks - 1) / blocks;
  return static_cast<int32_t>(std::clamp<int64_t>(wanted, 1, 64));
}

cudaError_t DecodeAttention(const DecodeShape& shape, const DecodeSequence* sequences,
                            const int32_t* lengths, int32_t layer, const void* queries, void* out,
                            const void* rope_table, const DecodeWorkspace& workspace,
                            cudaStream_t stream) {
  if (shape.batch == 0) return cudaSuccess;
  if (shape.kv_heads <= 0 || shape.num_heads % shape.kv_heads != 0) return cudaErrorInvalidValue;
  const int32_t group = shape.num_heads / shape.kv_heads;
  if (!DecodeAttentionSupports(shape.head_dim, group)) return cudaErrorInvalidValue;
  return DispatchDType(shape.dtype, [&](auto type) {
    using T = decltype(type);
    auto args = [&](auto dim) {
      return DispatchGroup(group, [&](auto g) {
        return Launch<T, decltype(dim)::value, decltype(g)::value>(
            shape, sequences, lengths, layer, queries, out, rope_table, workspace, stream);
      });
    };
    switch (shape.head_dim) {
      case 8:
        return args(std::integral_constant<int, 8>{});
      case 64:
        return args(std::integral_constant<int, 64>{});
      case 128:
        return args(std::integral_constant<int, 128>{});
    }
    return cudaErrorInvalidValue;
  });
}

}  // namespace kvserve::kernels
