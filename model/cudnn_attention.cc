#include "model/cudnn_attention.h"

#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <optional>
#include <tuple>

#include "cache/kernel_dtype.h"

namespace kvserve::cuda {

bool CudnnAttentionTakes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  const auto dtype = q.scalar_type();
  const int64_t dim = q.size(-1);
  return q.is_cuda() && Is16Bit(dtype) && k.scalar_type() == dtype && v.scalar_type() == dtype &&
         (dim == 64 || dim == 128) && at::globalContext().userEnabledCuDNN() &&
         at::cuda::getCurrentDeviceProperties()->major >= 8;
#else
  (void)q, (void)k, (void)v;
  return false;
#endif
}

Attended CudnnAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                        bool want_lse) {
  TORCH_CHECK(CudnnAttentionTakes(q, k, v), "CudnnAttention: cuDNN does not take queries ",
              q.sizes(), " with keys ", k.sizes());
#if TORCH_VERSION_MAJOR >= 2
  auto r = at::_scaled_dot_product_cudnn_attention(q, k, v, std::nullopt, want_lse, 0.0, causal);
  return {std::get<0>(r), want_lse ? std::get<1>(r) : at::Tensor()};
#else
  (void)k, (void)v, (void)causal, (void)want_lse;
  return {};
#endif
}

}  // namespace kvserve::cuda
