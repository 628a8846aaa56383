// MergeAttention (attention_merge.h): a memory-bound pass, one 16-byte word per thread.

#include "kernels/attention_merge.h"
#include "kernels/device_math.cuh"

namespace kvserve::kernels {
namespace {

// One 16-byte word of a row per thread; words ordered (word, head, row, batch), which for the
// (batch, row, head, dim) layout cuDNN writes is the memory order.
template <typename T>
__global__ void MergeAttentionKernel(AttentionMergeArgs a) {
  constexpr int kElems = kVecElems<T>;
  const int64_t words = a.head_dim / kElems;
  const int64_t total = words * a.heads * a.rows * a.batch;
  for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < total;
       v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t t = v / words;
    const int64_t word = v - t * words;
    const int64_t h = t % a.heads;
    t /= a.heads;
    const int64_t r = t % a.rows, n = t / a.rows;
    const int64_t at = n * a.batch_stride + h * a.head_stride + r * a.row_stride + word * kElems;
    const int64_t stat = (n * a.heads + h) * a.rows + r;
    const float la = a.lse_a[stat], lb = a.lse_b[stat], m = fmaxf(la, lb);
    const float wa = __expf(la - m), wb = __expf(lb - m), scale = 1.0f / (wa + wb);
    float x[kElems], y[kElems];
    LoadVec(static_cast<const T*>(a.a) + at, x);
    LoadVec(static_cast<const T*>(a.b) + at, y);
#pragma unroll
    for (int e = 0; e < kElems; ++e) x[e] = (wa * x[e] + wb * y[e]) * scale;
    StoreVec(static_cast<T*>(a.out) + at, x);
  }
}

}  // namespace

cudaError_t MergeAttention(const AttentionMergeArgs& a, cudaStream_t stream) {
  return DispatchDType(a.dtype, [&](auto type) {
    using T = decltype(type);
    if constexpr (std::is_same_v<T, float>) {
      return cudaErrorInvalidValue;  // only the 16-bit outputs of cuDNN are merged
    } else {
      const int64_t words =
          static_cast<int64_t>(a.batch) * a.heads * a.rows * (a.head_dim / kVecElems<T>);
      if (words == 0) return cudaSuccess;
      constexpr int kThreads = 256;
      MergeAttentionKernel<T><<<GridStrideBlocks(words, kThreads), kThreads, 0, stream>>>(a);
      return cudaGetLastError();
    }
  });
}

}  // namespace kvserve::kernels
