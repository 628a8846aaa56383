#include <cstdint>
#include <type_traits>

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

// One 16-byte vector of output per thread when a row is whole vectors and the rows are aligned,
// else one element: a memory-bound pass (at 32K prompt tokens it moves 2.8 GB a layer).
template <typename T, int E>
__global__ void SwiGluKernel(const T* gate_up, T* out, int64_t rows, int64_t width) {
  const int64_t vectors = width / E, total = rows * vectors;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / vectors, c = (i - r * vectors) * E;
    float gate[E], up[E], o[E];
    if constexpr (E == 1) {
      gate[0] = ToFloat(gate_up[r * 2 * width + c]);
      up[0] = ToFloat(gate_up[r * 2 * width + width + c]);
    } else {
      LoadVec<T>(gate_up + r * 2 * width + c, gate);
      LoadVec<T>(gate_up + r * 2 * width + width + c, up);
    }
#pragma unroll
    for (int e = 0; e < E; ++e) {
      // As torch: silu in float rounded to T, then the product rounded to T.
      o[e] = Round<T>(gate[e] / (1.0f + expf(-gate[e]))) * up[e];
    }
    if constexpr (E == 1) {
      out[r * width + c] = FromFloat<T>(o[0]);
    } else {
      StoreVec<T>(out + r * width + c, o);
    }
  }
}

// One thread per (position, 16-byte vector of the first half of a head): the vector's cos and sin
// once, then both halves of every head at that position.
template <typename T>
__global__ void RopeKernel(RopeArgs a) {
  constexpr int E = kVecElems<T>;
  const int64_t half = a.head_dim / 2, vectors = half / E, total = a.positions * vectors;
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = i / vectors, c = (i - p * vectors) * E;
    const float position = static_cast<float>(a.position_ids[p]);
    float cos_t[E], sin_t[E];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const float angle = position * a.inv_freq[c + e];
      cos_t[e] = Round<T>(cosf(angle));
      sin_t[e] = Round<T>(sinf(angle));
    }
    const T* src = x + p * a.x_position_stride + c;
    T* dst = out + p * a.out_position_stride + c;
    for (int64_t h = 0; h < a.heads; ++h) {
      float x1[E], x2[E], o1[E], o2[E];
      LoadVec<T>(src + h * a.x_head_stride, x1);
      LoadVec<T>(src + h * a.x_head_stride + half, x2);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        // x·cos + rotate_half(x)·sin, rotate_half(x) = (-x2, x1), each product rounded as torch's.
        o1[e] = Round<T>(x1[e] * cos_t[e]) + Round<T>(-x2[e] * sin_t[e]);
        o2[e] = Round<T>(x2[e] * cos_t[e]) + Round<T>(x1[e] * sin_t[e]);
      }
      StoreVec<T>(dst + h * a.out_head_stride, o1);
      StoreVec<T>(dst + h * a.out_head_stride + half, o2);
    }
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
  if (rows * width == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  return DispatchDType(dtype, [&](auto type) {
    using T = decltype(type);
    constexpr int E = kVecElems<T>;
    const auto* in = static_cast<const T*>(gate_up);
    auto* o = static_cast<T*>(out);
    if (width % E == 0 && Aligned16(gate_up) && Aligned16(out)) {
      SwiGluKernel<T, E><<<GridStrideBlocks(rows * width / E, kThreads), kThreads, 0, stream>>>(
          in, o, rows, width);
    } else {
      SwiGluKernel<T, 1>
          <<<GridStrideBlocks(rows * width, kThreads), kThreads, 0, stream>>>(in, o, rows, width);
    }
    return cudaGetLastError();
  });
}

bool RopeSupports(const RopeArgs& a) {
  constexpr int64_t e = 8;  // 16-bit elements in a 16-byte vector
  return a.dtype != DType::kFloat32 && a.head_dim % (2 * e) == 0 && Aligned16(a.x) &&
         Aligned16(a.out) && a.x_position_stride % e == 0 && a.x_head_stride % e == 0 &&
         a.out_position_stride % e == 0 && a.out_head_stride % e == 0;
}

cudaError_t Rope(const RopeArgs& a, cudaStream_t stream) {
  if (!RopeSupports(a)) return cudaErrorInvalidValue;
  if (a.positions * a.heads == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  return DispatchDType(a.dtype, [&](auto type) {
    using T = decltype(type);
    if constexpr (std::is_same_v<T, float>) {
      return cudaErrorInvalidValue;
    } else {
      const int64_t work = a.positions * (a.head_dim / 2 / kVecElems<T>);
      RopeKernel<T><<<GridStrideBlocks(work, kThreads), kThreads, 0, stream>>>(a);
      return cudaGetLastError();
    }
  });
}

}  // namespace kvserve::kernels
