// The element-wise parts of a Llama layer, one interface for every device: torch ops on the CPU
// (the reference), fused kernels on CUDA (kernels/elementwise.h), with the same roundings.
#pragma once

#include <ATen/ATen.h>

namespace kvserve {

// When `residual` is defined, x += residual in place (in x's dtype); then returns
// RMSNorm(x) * weight as Hugging Face computes it (float32 statistics, result cast back, then
// scaled). x [rows, hidden] contiguous.
at::Tensor AddRmsNorm(at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                      double eps);

// silu(gate) * up from the fused projection gate_up [rows, 2 width] (gate half first).
at::Tensor SwiGlu(const at::Tensor& gate_up);

// The same from torch ops on any device: what the CPU runs, and the oracle for the kernels.
at::Tensor AddRmsNormReference(at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                               double eps);
at::Tensor SwiGluReference(const at::Tensor& gate_up);

}  // namespace kvserve
