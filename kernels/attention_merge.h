// Merging two attention results of the same queries over disjoint key sets (split-KV): with a and
// b the outputs and la, lb the natural log-sum-exps of their rows' scaled scores,
// out = (e^(la-m)·a + e^(lb-m)·b) / (e^(la-m) + e^(lb-m)), m = max(la, lb): the attention over
// both sets. CritiPrefill's cuDNN path (model/criti_prefill_cudnn.h) merges a segment's attention
// to its earlier keys with the one to its own keys so.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace kvserve::kernels {

struct AttentionMergeArgs {
  DType dtype = DType::kBFloat16;
  int32_t batch = 0, heads = 0, rows = 0, head_dim = 0;
  // Element (n, h, r, i) of a, b and out sits at n * batch_stride + h * head_stride +
  // r * row_stride + i: the same layout for the three.
  int64_t batch_stride = 0, head_stride = 0, row_stride = 0;
  const void* a = nullptr;
  const void* b = nullptr;
  void* out = nullptr;  // may alias a or b
  // [batch, heads, rows], contiguous.
  const float* lse_a = nullptr;
  const float* lse_b = nullptr;
};

// REQUIRES: head_dim a multiple of 16 bytes' worth of elements, the pointers and strides 16-byte
// aligned.
cudaError_t MergeAttention(const AttentionMergeArgs& args, cudaStream_t stream);

}  // namespace kvserve::kernels
