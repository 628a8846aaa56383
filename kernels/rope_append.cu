// RopeAppend (decode_step.h): one block per (sequence, head); the step has one token per sequence.
#include "kernels/decode_step.h"
#include "kernels/device_math.cuh"

namespace kvserve::kernels {
namespace {

constexpr int kThreads = 64;

// Rotates the pair (x1, x2) = (x[i], x[i + d/2]) by the angle whose cos and sin (already rounded
// to T) are c and s, with the same roundings as torch's x * cos + rotate_half(x) * sin.
template <typename T>
__device__ __forceinline__ void RotatePair(float x1, float x2, float c, float s, float& out1,
                                           float& out2) {
  out1 = Round<T>(Round<T>(x1 * c) + Round<T>(-x2 * s));
  out2 = Round<T>(Round<T>(x2 * c) + Round<T>(x1 * s));
}

// One block per (sequence, head of the fused qkv row): blockIdx.y < heads rotates a query head,
// then kv_heads key heads, then kv_heads value heads are copied; a thread per (x[i], x[i + d/2])
// pair. Loads and stores of different heads are independent, so nothing waits on a store.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    RopeAppendKernel(DecodeShape shape, const DecodeSequence* sequences, const int32_t* lengths,
                     int32_t layer, const T* __restrict__ qkv, T* __restrict__ queries,
                     const float* __restrict__ inv_freq) {
  const int b = blockIdx.x, head = blockIdx.y;
  const DecodeSequence& s = sequences[b];
  if (s.keys == nullptr) return;
  const int d = shape.head_dim, half = d / 2, heads = shape.num_heads, kv_heads = shape.kv_heads;
  const int64_t slot = lengths[static_cast<int64_t>(layer) * shape.batch + b] - 1;
  const T* x = qkv + (static_cast<int64_t>(b) * (heads + 2 * kv_heads) + head) * d;
  if (head >= heads + kv_heads) {  // a value head
    const int kv = head - heads - kv_heads;
    T* values = static_cast<T*>(s.values) + layer * s.layer_stride + kv * s.value_head_stride;
    for (int i = threadIdx.x; i < d; i += blockDim.x) values[slot * d + i] = x[i];
    if (s.positions != nullptr && threadIdx.x == 0) {
      s.positions[layer * s.positions_layer_stride + kv * s.positions_head_stride + slot] =
          s.position;
    }
    return;
  }
  const bool query = head < heads;
  const bool rotate = query || s.keys_rotated;
  // HF's angle: the float32 product pos * inv_freq, its cos and sin rounded to T.
  const float pos = static_cast<float>(query ? s.query_rank : s.position);
  T* dst = query ? queries + (static_cast<int64_t>(b) * heads + head) * d
                 : static_cast<T*>(s.keys) + layer * s.layer_stride +
                       (head - heads) * s.key_head_stride + slot * d;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float x1 = ToFloat(x[i]), x2 = ToFloat(x[i + half]);
    float o1 = x1, o2 = x2;
    if (rotate) {
      float sine, cosine;
      sincosf(pos * inv_freq[i], &sine, &cosine);
      RotatePair<T>(x1, x2, Round<T>(cosine), Round<T>(sine), o1, o2);
    }
    dst[i] = FromFloat<T>(o1);
    dst[i + half] = FromFloat<T>(o2);
  }
}

}  // namespace

cudaError_t RopeAppend(const DecodeShape& shape, const DecodeSequence* sequences,
                       const int32_t* lengths, int32_t layer, const void* qkv, void* queries,
                       const float* inv_freq, cudaStream_t stream) {
  if (shape.batch == 0) return cudaSuccess;
  return DispatchDType(shape.dtype, [&](auto type) {
    using T = decltype(type);
    const dim3 grid(shape.batch, shape.num_heads + 2 * shape.kv_heads);
    RopeAppendKernel<T><<<grid, kThreads, 0, stream>>>(shape, sequences, lengths, layer,
                                                       static_cast<const T*>(qkv),
                                                       static_cast<T*>(queries), inv_freq);
    return cudaGetLastError();
  });
}

}  // namespace kvserve::kernels
