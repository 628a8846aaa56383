// Device helpers shared by the kernels: conversions between the storage types and float, 16-byte
// vector loads and stores, and warp/block reductions. Internal to kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/dtype.h"

namespace kvserve::kernels {

constexpr float kLog2e = 1.4426950408889634f;

// Blocks of `threads` for a grid-stride loop over `work` items: one item a thread, at most 2^20
// blocks.
inline unsigned GridStrideBlocks(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < (int64_t{1} << 20) ? blocks : (int64_t{1} << 20));
}

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Rounds a float to T and back: the value a T-typed torch op would have produced.
template <typename T>
__device__ __forceinline__ float Round(float x) {
  return ToFloat(FromFloat<T>(x));
}

// Elements of T in one 16-byte access.
template <typename T>
constexpr int kVecElems = 16 / static_cast<int>(sizeof(T));

// Loads kVecElems<T> consecutive elements (16-byte aligned) as floats.
template <typename T>
__device__ __forceinline__ void LoadVec(const T* p, float (&out)[kVecElems<T>]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int e = 0; e < kVecElems<T>; ++e) out[e] = ToFloat(v[e]);
}

// The kVecElems<T> elements of a 16-byte word as floats.
template <typename T>
__device__ __forceinline__ void Unpack(const uint4& raw, float (&out)[kVecElems<T>]) {
  const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int e = 0; e < kVecElems<T>; ++e) out[e] = ToFloat(v[e]);
}

template <typename T>
__device__ __forceinline__ void StoreVec(T* p, const float (&in)[kVecElems<T>]) {
  uint4 raw;
  T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int e = 0; e < kVecElems<T>; ++e) v[e] = FromFloat<T>(in[e]);
  *reinterpret_cast<uint4*>(p) = raw;
}

// 16 bytes from global to shared memory without passing through registers (sm_80+), or zeros
// when `valid` is false. Copies issued since the last commit form one group.
__device__ __forceinline__ void CopyAsync16(void* shared, const void* global, bool valid) {
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CopyAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void CopyAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Sum over the block; every thread gets the result. `scratch` holds one float per warp.
// REQUIRES: blockDim.x is a multiple of 32 and at most 1024; every thread of the block calls it.
__device__ __forceinline__ float BlockSum(float x, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  x = WarpSum(x);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

// Calls f with a value of the C++ type that `dtype` names.
template <typename F>
cudaError_t DispatchDType(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      return f(float{});
    case DType::kFloat16:
      return f(__half{});
    case DType::kBFloat16:
      return f(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace kvserve::kernels
