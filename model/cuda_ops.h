// Adapters from torch tensors to the CUDA kernels (kernels/): shape and layout checks, the current
// stream, and errors as torch exceptions. CUDA builds only (KVSERVE_WITH_CUDA).
#pragma once

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>

#include "cache/kernel_dtype.h"

namespace kvserve::cuda {

// The stream torch queues work on for the current device.
cudaStream_t CurrentStream();
// Streaming multiprocessors of the current device.
int MultiprocessorCount();
// Throws (a c10::Error naming `what`) unless `error` is cudaSuccess.
void Check(cudaError_t error, const char* what);
// Whether a [heads, rows, dim] tensor has its rows contiguous and dense (the kernels' layout:
// heads may sit at any stride, e.g. inside a larger cache buffer).
bool RowsContiguous(const at::Tensor& t);

// Causal prefill attention of a chunk on the tensor cores (kernels/prefill_attention.h):
// queries [n, heads, dim], keys and values [kv_heads, m, dim] with rows of dim contiguous, the
// chunk's n keys last. With `blocks` [kv_heads, segments, max_blocks] and `dense` [segments]
// (int32, on the device), block-sparse per query segment. Returns [n, heads, dim].
bool PrefillKernelTakes(const at::Tensor& queries, const at::Tensor& keys, const at::Tensor& values,
                        int64_t segment_size);
// `key_offset`: see kernels::PrefillAttentionArgs.
at::Tensor PrefillAttention(const at::Tensor& queries, const at::Tensor& keys,
                            const at::Tensor& values, const at::Tensor& blocks = {},
                            const at::Tensor& dense = {}, int64_t segment_size = 0,
                            int64_t block_size = 0, int64_t key_offset = 0);

// Two attention results of the same queries over disjoint key sets merged by the log-sum-exps of
// their rows (kernels/attention_merge.h) into `out`: a, b and out [batch, heads, rows, dim],
// 16-bit, with the same strides and dim contiguous; lse_a and lse_b float32 [batch, heads, rows] (a
// trailing 1 allowed), contiguous.
void MergeAttention(const at::Tensor& a, const at::Tensor& lse_a, const at::Tensor& b,
                    const at::Tensor& lse_b, at::Tensor& out);

// ops.h, on CUDA tensors.
at::Tensor AddRmsNorm(at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                      double eps);
at::Tensor SwiGlu(const at::Tensor& gate_up);

// RotaryEmbedding::Apply (rope.h) for 16-bit x [a, b, head_dim] with positions along dim `seq_dim`
// (0 or 1) and the last dim contiguous, through kernels::Rope: the same roundings, so the same
// values. Returns a contiguous tensor of x's sizes.
bool RopeKernelTakes(const at::Tensor& x, int64_t seq_dim);
at::Tensor Rope(const at::Tensor& x, const at::Tensor& positions, int64_t seq_dim,
                const at::Tensor& inv_freq);

}  // namespace kvserve::cuda
