// Fused element-wise kernels of the Llama layer. Raw pointers to contiguous row-major tensors of
// the given dtype; each returns the launch's error (cudaSuccess when it was queued on `stream`).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace kvserve::kernels {

// For each of `rows` rows of `hidden` elements: when `residual` is not null, x += residual (in the
// dtype, rounded as a torch add is); then out = weight * dtype(x * rsqrt(mean(x^2) + eps)), the
// normalisation in float32 and the two roundings in Hugging Face's order. `out` must not alias x.
cudaError_t AddRmsNorm(DType dtype, void* x, const void* residual, const void* weight, void* out,
                       int64_t rows, int64_t hidden, float eps, cudaStream_t stream);

// out[r, i] = dtype(silu(gate[r, i])) * up[r, i], where gate_up [rows, 2 * width] holds the gate
// half then the up half of each row (the fused gate_up projection), out [rows, width].
cudaError_t SwiGlu(DType dtype, const void* gate_up, void* out, int64_t rows, int64_t width,
                   cudaStream_t stream);

// Rotary position embedding (rotate-half layout) of x viewed as [positions, heads, head_dim], each
// of the two leading axes at any stride (in elements), the last contiguous; out is the same view
// of its own strides and must not alias x. With angle = float(position_ids[p]) * inv_freq[i mod
// head_dim/2] in float32: out = x * cos + rotate_half(x) * sin, cos and sin rounded to the dtype
// and each product and the sum rounded to it, as the torch ops of RotaryEmbedding::Apply round.
struct RopeArgs {
  DType dtype = DType::kBFloat16;
  const void* x = nullptr;
  void* out = nullptr;
  const int64_t* position_ids = nullptr;  // [positions]
  const float* inv_freq = nullptr;        // [head_dim / 2]
  int64_t positions = 0, heads = 0, head_dim = 0;
  int64_t x_position_stride = 0, x_head_stride = 0;
  int64_t out_position_stride = 0, out_head_stride = 0;
};
// 16-bit dtypes, head_dim a multiple of 16, x and out 16-byte aligned with strides multiples of 8.
bool RopeSupports(const RopeArgs& a);
cudaError_t Rope(const RopeArgs& a, cudaStream_t stream);

}  // namespace kvserve::kernels
