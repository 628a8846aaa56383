#include <algorithm>

#include "kernels/device_math.cuh"
#include "kernels/elementwise.h"

namespace kvserve::kernels {
namespace {

constexpr int kNormThreads = 256;

// One block per row: the row is small (a few KiB) and read twice, the second time from cache.
template <typename T>
__global__ void __launch_bounds__(kNormThreads)
    AddRmsNormKernel(T* x, const T* residual, const T* weight, T* out, int64_t hidden, float eps) {
  __shared__ float scratch[kNormThreads / 32];
  T* row = x + blockIdx.x * hidden;
  const T* res = residual == nullptr ? nullptr : residual + blockIdx.x * hidden;
  float squares = 0;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = ToFloat(row[i]);
    if (res != nullptr) {
      v = Round<T>(v + ToFloat(res[i]));
      row[i] = FromFloat<T>(v);
    }
    squares += v * v;
  }
  const float rstd = rsqrtf(BlockSum(squares, scratch) / static_cast<float>(hidden) + eps);
  T* dst = out + blockIdx.x * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float normed = Round<T>(ToFloat(row[i]) * rstd);
    dst[i] = FromFloat<T>(ToFloat(weight[i]) * normed);
  }
}

template <typename T>
__global__ void SwiGluKernel(const T* gate_up, T* out, int64_t rows, int64_t width) {
  const int64_t total = rows * width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    const float gate = ToFloat(gate_up[r * 2 * width + c]);
    const float up = ToFloat(gate_up[r * 2 * width + width + c]);
    // As torch: silu in float rounded to T, then the product rounded to T.
    const float silu = Round<T>(gate / (1.0f + expf(-gate)));
    out[i] = FromFloat<T>(silu * up);
  }
}

}  // namespace

cudaError_t AddRmsNorm(DType dtype, void* x, const void* residual, const void* weight, void* out,
                       int64_t rows, int64_t hidden, float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return DispatchDType(dtype, [&](auto type) {
    using T = decltype(type);
    AddRmsNormKernel<T><<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(
        static_cast<T*>(x), static_cast<const T*>(residual), static_cast<const T*>(weight),
        static_cast<T*>(out), hidden, eps);
    return cudaGetLastError();
  });
}

cudaError_t SwiGlu(DType dtype, const void* gate_up, void* out, int64_t rows, int64_t width,
                   cudaStream_t stream) {
  const int64_t total = rows * width;
  if (total == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 65535);
  return DispatchDType(dtype, [&](auto type) {
    using T = decltype(type);
    SwiGluKernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        static_cast<const T*>(gate_up), static_cast<T*>(out), rows, width);
    return cudaGetLastError();
  });
}

}  // namespace kvserve::kernels
