// Flash attention through cuDNN (libtorch 2's at::_scaled_dot_product_cudnn_attention), with
// grouped-query keys passed as they are: the dense prefill of a chunk that starts its sequence
// (model/cuda_attention.cc) and the pieces of CritiPrefill's sparse layers
// (model/criti_prefill_cudnn.h). On the H200 cuDNN's Hopper kernel is the fastest attention torch
// offers these shapes. CUDA builds only.
#pragma once

#include <ATen/ATen.h>

namespace kvserve::cuda {

// Whether cuDNN attention runs here on q, k and v: libtorch 2, cuDNN enabled, a CUDA device of
// compute capability 8 or more, one 16-bit dtype and a head dim (the last) of 64 or 128.
bool CudnnAttentionTakes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

struct Attended {
  at::Tensor out;  // [b, heads, L, dim], laid out as q
  at::Tensor lse;  // [b, heads, L] float32: the natural log-sum-exp of each row's scaled scores
};

// Queries q [b, heads, L, dim] against keys and values [b, kv_heads, P, dim] (heads a multiple of
// kv_heads), scale 1/sqrt(dim). `causal` masks top-left aligned (query i sees keys 0..i), which is
// the usual causal mask only when L == P. `lse` is left undefined unless `want_lse`.
// REQUIRES: CudnnAttentionTakes(q, k, v).
Attended CudnnAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                        bool want_lse);

}  // namespace kvserve::cuda
