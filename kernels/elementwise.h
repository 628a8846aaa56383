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

}  // namespace kvserve::kernels
