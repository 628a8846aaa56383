#include "model/cudnn_attention.h"

#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <optional>
#include <tuple>

namespace kvserve::cuda {

bool CudnnAttentionTakes(const at::Tensor& q) {
#if TORCH_VERSION_MAJOR >= 2
  const auto dtype = q.scalar_type();
  const int64_t dim = q.size(-1);
  return q.is_cuda() && (dtype == at::kHalf || dtype == at::kBFloat16) &&
         (dim == 64 || dim == 128) && at::globalContext().userEnabledCuDNN() &&
         at::cuda::getCurrentDeviceProperties()->major >= 8;
#else
  (void)q;
  return false;
#endif
}

Attended CudnnAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                        bool want_lse) {
  TORCH_CHECK(CudnnAttentionTakes(q), "CudnnAttention: cuDNN does not take queries ", q.sizes());
#if TORCH_VERSION_MAJOR >= 2
  auto r = at::_scaled_dot_product_cudnn_attention(q, k, v, std::nullopt, want_lse, 0.0, causal);
  return {std::get<0>(r), want_lse ? std::get<1>(r) : at::Tensor()};
#else
  (void)k, (void)v, (void)causal, (void)want_lse;
  return {};
#endif
}

}  // namespace kvserve::cuda
