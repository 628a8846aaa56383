#include "model/ops.h"

#ifdef KVSERVE_WITH_CUDA
#include "model/cuda_ops.h"
#endif

namespace kvserve {

at::Tensor AddRmsNorm(at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                      double eps) {
#ifdef KVSERVE_WITH_CUDA
  if (x.is_cuda()) return cuda::AddRmsNorm(x, residual, weight, eps);
#endif
  return AddRmsNormReference(x, residual, weight, eps);
}

at::Tensor AddRmsNormReference(at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                               double eps) {
  if (residual.defined()) x.add_(residual);
  auto x32 = x.to(at::kFloat);
  auto variance = x32.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (x32 * at::rsqrt(variance + eps)).to(x.scalar_type());
}

at::Tensor SwiGlu(const at::Tensor& gate_up) {
#ifdef KVSERVE_WITH_CUDA
  if (gate_up.is_cuda()) return cuda::SwiGlu(gate_up);
#endif
  return SwiGluReference(gate_up);
}

at::Tensor SwiGluReference(const at::Tensor& gate_up) {
  auto parts = gate_up.chunk(2, -1);
  return at::silu(parts[0]) * parts[1];
}

}  // namespace kvserve
