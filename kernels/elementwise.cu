#include <algorithm>
#include <cstdint>

#include "kernels/device_math.cuh"
#include "kernels/elementwise.h"

namespace kvserve::kernels {
namespace {

constexpr int kNormThreads = 256;

// One block per row, the row held in registers as kVecs 16-byte vectors per thread: one read of x
// and the residual, one write of each output. Roundings as AddRmsNormReference (ops.h).
template <typename T, int kVecs>
__global__ void __launch_bounds__(kNormThreads)
    AddRmsNormKernel(T* x, const T* residual, const T* weight, T* out, int64_t hidden, float eps) {
  constexpr int E = kVecElems<T>;
  __shared__ float scratch[kNormThreads / 32];
  T* row = x + blockIdx.x * hidden;
  const T* res = residual == nullptr ? nullptr : residual + blockIdx.x * hidden;
  float v[kVecs][E];
  float squares = 0;
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int64_t i = (static_cast<int64_t>(j) * kNormThreads + threadIdx.x) * E;
    if (i >= hidden) break;
    LoadVec<T>(row + i, v[j]);
    if (res != nullptr) {
      float r[E];
      LoadVec<T>(res + i, r);
#pragma unroll
      for (int e = 0; e < E; ++e) v[j][e] = Round<T>(v[j][e] + r[e]);
      StoreVec<T>(row + i, v[j]);
    }
#pragma unroll
    for (int e = 0; e < E; ++e) squares += v[j][e] * v[j][e];
  }
  const float rstd = rsqrtf(BlockSum(squares, scratch) / static_cast<float>(hidden) + eps);
  T* dst = out + blockIdx.x * hidden;
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int64_t i = (static_cast<int64_t>(j) * kNormThreads + threadIdx.x) * E;
    if (i >= hidden) break;
    float w[E], o[E];
    LoadVec<T>(weight + i, w);
#pragma unroll
    for (int e = 0; e < E; ++e) o[e] = w[e] * Round<T>(v[j][e] * rstd);
    StoreVec<T>(dst + i, o);
  }
}

// Rows that are not whole 16-byte vectors, or too long for the registers: element by element,
// the row read twice (the second time from cache).
template <typename T>
__global__ void __launch_bounds__(kNormThreads)
    AddRmsNormScalarKernel(T* x, const T* residual, const T* weight, T* out, int64_t hidden,
                           float eps) {
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

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

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
    auto* xt = static_cast<T*>(x);
    const auto* rt = static_cast<const T*>(residual);
    const auto* wt = static_cast<const T*>(weight);
    auto* ot = static_cast<T*>(out);
    const unsigned blocks = static_cast<unsigned>(rows);
    constexpr int64_t kPerVec =
        kNormThreads * kVecElems<T>;  // elements one vector per thread covers
    const bool vectors = hidden % kVecElems<T> == 0 && Aligned16(x) && Aligned16(weight) &&
                         Aligned16(out) && (residual == nullptr || Aligned16(residual));
    if (vectors && hidden <= kPerVec) {
      AddRmsNormKernel<T, 1><<<blocks, kNormThreads, 0, stream>>>(xt, rt, wt, ot, hidden, eps);
    } else if (vectors && hidden <= 2 * kPerVec) {
      AddRmsNormKernel<T, 2><<<blocks, kNormThreads, 0, stream>>>(xt, rt, wt, ot, hidden, eps);
    } else if (vectors && hidden <= 4 * kPerVec) {
      AddRmsNormKernel<T, 4><<<blocks, kNormThreads, 0, stream>>>(xt, rt, wt, ot, hidden, eps);
    } else {
      AddRmsNormScalarKernel<T><<<blocks, kNormThreads, 0, stream>>>(xt, rt, wt, ot, hidden, eps);
    }
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
