// The earlier prefill kernel (prefill_attention.h's contract), kept for comparison with the
// packed-heads kernel of prefill_attention.cu (PrefillAttentionArgs::per_head): FlashAttention-2
// style, one block of 4 warps per (64-query tile, query head); each warp owns 16 query rows, keeps
// its queries in registers and an online softmax per row, and walks the tile's key list in tiles
// of 64 keys staged in shared memory (cp.async, one tile in flight). The key list is the segment's
// selected blocks, then a contiguous causal range.
#include "kernels/prefill_mma.cuh"

namespace kvserve::kernels {
namespace {

constexpr int kRows = 64;  // queries per block
constexpr int kKeys = 64;  // keys per shared-memory tile
constexpr int kThreads = 128;
constexpr int kPad = 8;  // elements of padding per shared row: no bank conflicts

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2)
    PrefillKernel(PrefillAttentionArgs a, float scale_log2) {
  constexpr int kStride = D + kPad;
  __shared__ __align__(16) T keys[kKeys][kStride];
  __shared__ __align__(16) T values[kKeys][kStride];
  __shared__ int key_index[kKeys];
  __shared__ int selected_count;

  // Longest tiles (the latest queries see the most keys) start first.
  const int tile = gridDim.x - 1 - blockIdx.x, head = blockIdx.y;
  const int kv_head = head / (a.num_heads / a.kv_heads);
  const int n = a.queries, first_index = a.keys - a.queries;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, tig = lane & 3;
  const int q0 = tile * kRows, row0 = q0 + warp * 16;
  const T* q = static_cast<const T*>(a.q);
  const T* k_base = static_cast<const T*>(a.k) + kv_head * a.key_head_stride;
  const T* v_base = static_cast<const T*>(a.v) + kv_head * a.value_head_stride;

  // This warp's queries as A fragments: rows g and g + 8, columns 2 tig (+1) and 2 tig + 8 (+9).
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int row = row0 + g + (r % 2) * 8, col = ks * 16 + 2 * tig + (r / 2) * 8;
      qf[ks][r] = row < n ? *reinterpret_cast<const uint32_t*>(
                                q + (static_cast<int64_t>(row) * a.num_heads + head) * D + col)
                          : 0u;
    }
  }

  // The tile's key list: the segment's blocks (sparse segments), then [begin, end) causally.
  const int segment = a.blocks == nullptr ? 0 : q0 / a.segment_size;
  const bool dense = a.blocks == nullptr || a.dense[segment] != 0;
  const int last_query = min(q0 + kRows, n) - 1;
  const int begin = dense ? 0 : first_index + segment * a.segment_size;
  const int end = first_index + last_query + 1;
  const int32_t* block_list =
      dense ? nullptr
            : a.blocks + (static_cast<int64_t>(kv_head) * a.segments + segment) * a.max_blocks;
  if (threadIdx.x == 0) {
    int count = 0;
    while (!dense && count < a.max_blocks && block_list[count] >= 0) ++count;
    selected_count = count;
  }
  __syncthreads();
  const int selected_keys = selected_count * a.block_size;
  const int selected_tiles = (selected_keys + kKeys - 1) / kKeys;
  const int tiles = selected_tiles + (end - begin + kKeys - 1) / kKeys;

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;

  for (int t = 0; t < tiles; ++t) {
    __syncthreads();  // the previous tile's shared memory is no longer read
    if (threadIdx.x < kKeys) {
      int index = -1;
      if (t < selected_tiles) {
        const int i = t * kKeys + threadIdx.x;
        if (i < selected_keys) {
          index = block_list[i / a.block_size] * a.block_size + i % a.block_size - a.key_offset;
          if (index < 0) index = -1;
        }
      } else {
        const int i = begin + (t - selected_tiles) * kKeys + threadIdx.x;
        if (i < end) index = i;
      }
      key_index[threadIdx.x] = index;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < kKeys * (D / 8); c += kThreads) {
      const int row = c / (D / 8), col = (c % (D / 8)) * 8;
      const int index = key_index[row];
      const int64_t offset = static_cast<int64_t>(index < 0 ? 0 : index) * D + col;
      CopyAsync16(&keys[row][col], k_base + offset, index >= 0);
      CopyAsync16(&values[row][col], v_base + offset, index >= 0);
    }
    CopyAsyncCommit();
    CopyAsyncWait<0>();
    __syncthreads();

    // S = Q Kᵀ for this warp's 16 rows and the tile's 64 keys.
    float s[kKeys / 8][4];
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        const T* row = &keys[nt * 8 + g][ks * 16 + 2 * tig];
        Mma<T>(s[nt], qf[ks], *reinterpret_cast<const uint32_t*>(row),
               *reinterpret_cast<const uint32_t*>(row + 8));
      }
    }
    // Mask (invalid keys, causality), scale, and the online softmax of rows g and g + 8.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int half = e / 2, key = key_index[nt * 8 + 2 * tig + (e & 1)];
        const int query_index = first_index + row0 + g + half * 8;
        const bool visible = key >= 0 && key <= query_index;
        s[nt][e] = visible ? s[nt][e] * scale_log2 : -INFINITY;
        tile_max[half] = fmaxf(tile_max[half], s[nt][e]);
      }
    }
    float correction[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 1));
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 2));
      const float m_new = fmaxf(m[half], tile_max[half]);
      const float base = m_new == -INFINITY ? 0.f : m_new;  // a row with no visible key yet
      correction[half] = exp2f(m[half] - base);
      m[half] = m_new;
      tile_max[half] = base;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - tile_max[e / 2]);
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
    // O += P V: the S accumulators of key tiles 2kk and 2kk + 1 are the A fragment of keys
    // [16 kk, 16 kk + 16); V's B fragments are gathered from two rows each.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t p[4] = {
          Pack<T>(s[2 * kk][0], s[2 * kk][1]), Pack<T>(s[2 * kk][2], s[2 * kk][3]),
          Pack<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]), Pack<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      const int key = kk * 16 + 2 * tig;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const int col = dt * 8 + g;
        Mma<T>(o[dt], p, PackRaw(values[key][col], values[key + 1][col]),
               PackRaw(values[key + 8][col], values[key + 9][col]));
      }
    }
  }

  // Each row's sum is spread over the 4 lanes of its group.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 1);
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 2);
  }
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + g + half * 8;
    if (row >= n) continue;
    const float inverse = l[half] > 0 ? 1.f / l[half] : 0.f;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(out + (static_cast<int64_t>(row) * a.num_heads + head) * D +
                                   dt * 8 + 2 * tig) =
          Pack<T>(o[dt][half * 2] * inverse, o[dt][half * 2 + 1] * inverse);
    }
  }
}

template <typename T>
cudaError_t LaunchTyped(const PrefillAttentionArgs& a, cudaStream_t stream) {
  const dim3 grid((a.queries + kRows - 1) / kRows, a.num_heads);
  const float scale_log2 = kLog2e / sqrtf(static_cast<float>(a.head_dim));
  switch (a.head_dim) {
    case 64:
      PrefillKernel<T, 64><<<grid, kThreads, 0, stream>>>(a, scale_log2);
      break;
    case 128:
      PrefillKernel<T, 128><<<grid, kThreads, 0, stream>>>(a, scale_log2);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPrefillPerHead(const PrefillAttentionArgs& a, cudaStream_t stream) {
  if (a.dtype == DType::kBFloat16) return LaunchTyped<__nv_bfloat16>(a, stream);
  return LaunchTyped<__half>(a, stream);
}

}  // namespace kvserve::kernels
