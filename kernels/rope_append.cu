// RopeAppend (decode_step.h): one block per sequence; the step has one token per sequence.
#include "kernels/decode_step.h"
#include "kernels/device_math.cuh"

namespace kvserve::kernels {
namespace {

constexpr int kThreads = 256;

// Rotates the pair (x1, x2) = (x[i], x[i + d/2]) by the angle whose cos and sin (already rounded
// to T) are c and s, with the same roundings as torch's x * cos + rotate_half(x) * sin.
template <typename T>
__device__ __forceinline__ void RotatePair(float x1, float x2, float c, float s, float& out1,
                                           float& out2) {
  out1 = Round<T>(Round<T>(x1 * c) + Round<T>(-x2 * s));
  out2 = Round<T>(Round<T>(x2 * c) + Round<T>(x1 * s));
}

// E elements of T in one access (16 bytes where the head's halves split into 16-byte chunks).
template <typename T, int E>
struct alignas(E * sizeof(T)) Chunk {
  T v[E];
};

// One block per sequence. The block first takes the cos and sin of each frequency at the query's
// rank and at the key's position (every head shares them), then a thread per E pairs (x[i..i+E),
// x[i+d/2..i+d/2+E)) of the query and key heads of the fused qkv row, then a thread per E
// elements of its value heads. Loads and stores of different heads are independent, so nothing
// waits on a store.
template <typename T, int E>
__global__ void __launch_bounds__(kThreads)
    RopeAppendKernel(DecodeShape shape, const DecodeSequence* sequences, const int32_t* lengths,
                     int32_t layer, const T* __restrict__ qkv, T* __restrict__ queries,
                     const float* __restrict__ inv_freq) {
  using C = Chunk<T, E>;
  const int b = blockIdx.x;
  const DecodeSequence& s = sequences[b];
  if (s.keys == nullptr) return;
  const int d = shape.head_dim, half = d / 2, heads = shape.num_heads, kv_heads = shape.kv_heads;
  // Frequency i: the query's (cos, sin) at i, the key's at half + i; rounded to T.
  extern __shared__ float angles[];
  float* cosines = angles;
  float* sines = angles + d;
  for (int i = threadIdx.x; i < d; i += kThreads) {
    // HF's angle: the float32 product pos * inv_freq, its cos and sin rounded to T.
    const float pos = static_cast<float>(i < half ? s.query_rank : s.position);
    float sine, cosine;
    sincosf(pos * inv_freq[i % half], &sine, &cosine);
    cosines[i] = Round<T>(cosine);
    sines[i] = Round<T>(sine);
  }
  const int64_t slot = lengths[static_cast<int64_t>(layer) * shape.batch + b] - 1;
  const T* row = qkv + static_cast<int64_t>(b) * (heads + 2 * kv_heads) * d;
  __syncthreads();
  const int half_chunks = half / E;
  for (int task = threadIdx.x; task < (heads + kv_heads) * half_chunks; task += kThreads) {
    const int head = task / half_chunks, i0 = task % half_chunks * E;
    const bool query = head < heads;
    const T* x = row + head * d + i0;
    T* dst = (query ? queries + (static_cast<int64_t>(b) * heads + head) * d
                    : static_cast<T*>(s.keys) + layer * s.layer_stride +
                          (head - heads) * s.key_head_stride + slot * d) +
             i0;
    const C x1 = *reinterpret_cast<const C*>(x), x2 = *reinterpret_cast<const C*>(x + half);
    C o1 = x1, o2 = x2;
    if (query || s.keys_rotated) {
      const float* c = cosines + (query ? 0 : half) + i0;
      const float* n = sines + (query ? 0 : half) + i0;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        float r1, r2;
        RotatePair<T>(ToFloat(x1.v[e]), ToFloat(x2.v[e]), c[e], n[e], r1, r2);
        o1.v[e] = FromFloat<T>(r1);
        o2.v[e] = FromFloat<T>(r2);
      }
    }
    *reinterpret_cast<C*>(dst) = o1;
    *reinterpret_cast<C*>(dst + half) = o2;
  }
  const C* value_row = reinterpret_cast<const C*>(row + (heads + kv_heads) * d);
  const int chunks = d / E;
  for (int task = threadIdx.x; task < kv_heads * chunks; task += kThreads) {
    const int kv = task / chunks;
    T* values = static_cast<T*>(s.values) + layer * s.layer_stride + kv * s.value_head_stride;
    reinterpret_cast<C*>(values + slot * d)[task % chunks] = value_row[task];
  }
  if (s.positions != nullptr && threadIdx.x < kv_heads) {
    s.positions[layer * s.positions_layer_stride + threadIdx.x * s.positions_head_stride + slot] =
        s.position;
  }
}

}  // namespace

cudaError_t RopeAppend(const DecodeShape& shape, const DecodeSequence* sequences,
                       const int32_t* lengths, int32_t layer, const void* qkv, void* queries,
                       const float* inv_freq, cudaStream_t stream) {
  if (shape.batch == 0) return cudaSuccess;
  return DispatchDType(shape.dtype, [&](auto type) {
    using T = decltype(type);
    const size_t angle_bytes = 2 * static_cast<size_t>(shape.head_dim) * sizeof(float);
    constexpr int E = kVecElems<T>;
    if ((shape.head_dim / 2) % E == 0) {
      RopeAppendKernel<T, E><<<shape.batch, kThreads, angle_bytes, stream>>>(
          shape, sequences, lengths, layer, static_cast<const T*>(qkv), static_cast<T*>(queries),
          inv_freq);
    } else {
      RopeAppendKernel<T, 1><<<shape.batch, kThreads, angle_bytes, stream>>>(
          shape, sequences, lengths, layer, static_cast<const T*>(qkv), static_cast<T*>(queries),
          inv_freq);
    }
    return cudaGetLastError();
  });
}

}  // namespace kvserve::kernels
