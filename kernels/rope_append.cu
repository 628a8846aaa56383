// RopeAppend (decode_step.h): one block per sequence; the step has one token per sequence.
#include "kernels/decode_step.h"
#include "kernels/device_math.cuh"

namespace kvserve::kernels {
namespace {

constexpr int kThreads = 128;

// Rotates the pair (x1, x2) = (x[i], x[i + d/2]) by the angle whose cos and sin (already rounded
// to T) are c and s, with the same roundings as torch's x * cos + rotate_half(x) * sin.
template <typename T>
__device__ __forceinline__ void RotatePair(float x1, float x2, float c, float s, float& out1,
                                           float& out2) {
  out1 = Round<T>(Round<T>(x1 * c) + Round<T>(-x2 * s));
  out2 = Round<T>(Round<T>(x2 * c) + Round<T>(x1 * s));
}

// The largest head_dim the kernel is built for (decode_step.h lists 8, 64 and 128).
constexpr int kMaxHalf = 128;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    RopeAppendKernel(DecodeShape shape, const DecodeSequence* sequences, const int32_t* lengths,
                     int32_t layer, const T* qkv, T* queries, const float* inv_freq) {
  const int b = blockIdx.x;
  const DecodeSequence& s = sequences[b];
  if (s.keys == nullptr) return;
  const int d = shape.head_dim, half = d / 2, heads = shape.num_heads, kv_heads = shape.kv_heads;
  const int64_t slot = lengths[static_cast<int64_t>(layer) * shape.batch + b] - 1;
  const T* row = qkv + static_cast<int64_t>(b) * (heads + 2 * kv_heads) * d;
  T* keys = static_cast<T*>(s.keys) + layer * s.layer_stride + slot * d;
  T* values = static_cast<T*>(s.values) + layer * s.layer_stride + slot * d;

  // cos and sin once per frequency (HF: the float32 angle pos * inv_freq, rounded to T), for the
  // query's rank and the key's position; every head shares them.
  __shared__ float query_cs[kMaxHalf][2], key_cs[kMaxHalf][2];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float sine, cosine;
    sincosf(static_cast<float>(s.query_rank) * inv_freq[i], &sine, &cosine);
    query_cs[i][0] = Round<T>(cosine);
    query_cs[i][1] = Round<T>(sine);
    sincosf(static_cast<float>(s.position) * inv_freq[i], &sine, &cosine);
    key_cs[i][0] = Round<T>(cosine);
    key_cs[i][1] = Round<T>(sine);
  }
  __syncthreads();

  // Queries and keys: one (head, i) pair per item; heads [0, heads) are queries.
  for (int item = threadIdx.x; item < (heads + kv_heads) * half; item += blockDim.x) {
    const int head = item / half, i = item % half;
    const T* x = row + head * d;
    const float x1 = ToFloat(x[i]), x2 = ToFloat(x[i + half]);
    if (head < heads) {
      float o1, o2;
      RotatePair<T>(x1, x2, query_cs[i][0], query_cs[i][1], o1, o2);
      T* q = queries + (static_cast<int64_t>(b) * heads + head) * d;
      q[i] = FromFloat<T>(o1);
      q[i + half] = FromFloat<T>(o2);
    } else {
      float o1 = x1, o2 = x2;
      if (s.keys_rotated) RotatePair<T>(x1, x2, key_cs[i][0], key_cs[i][1], o1, o2);
      T* k = keys + (head - heads) * s.key_head_stride;
      k[i] = FromFloat<T>(o1);
      k[i + half] = FromFloat<T>(o2);
    }
  }
  for (int item = threadIdx.x; item < kv_heads * d; item += blockDim.x) {
    const int head = item / d, i = item % d;
    values[head * s.value_head_stride + i] = row[(heads + kv_heads + head) * d + i];
  }
  if (s.positions != nullptr) {
    for (int head = threadIdx.x; head < kv_heads; head += blockDim.x) {
      s.positions[layer * s.positions_layer_stride + head * s.positions_head_stride + slot] =
          s.position;
    }
  }
}

}  // namespace

cudaError_t RopeAppend(const DecodeShape& shape, const DecodeSequence* sequences,
                       const int32_t* lengths, int32_t layer, const void* qkv, void* queries,
                       const float* inv_freq, cudaStream_t stream) {
  if (shape.batch == 0) return cudaSuccess;
  if (shape.head_dim > 2 * kMaxHalf) return cudaErrorInvalidValue;
  return DispatchDType(shape.dtype, [&](auto type) {
    using T = decltype(type);
    RopeAppendKernel<T><<<shape.batch, kThreads, 0, stream>>>(shape, sequences, lengths, layer,
                                                              static_cast<const T*>(qkv),
                                                              static_cast<T*>(queries), inv_freq);
    return cudaGetLastError();
  });
}

}  // namespace kvserve::kernels
