#include "model/cuda_ops.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "kernels/attention_merge.h"
#include "kernels/elementwise.h"
#include "kernels/prefill_attention.h"

namespace kvserve::cuda {

cudaStream_t CurrentStream() { return at::cuda::getCurrentCUDAStream().stream(); }

int MultiprocessorCount() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

void Check(cudaError_t error, const char* what) {
  TORCH_CHECK(error == cudaSuccess, what, ": ", cudaGetErrorString(error));
}

bool RowsContiguous(const at::Tensor& t) { return t.stride(2) == 1 && t.stride(1) == t.size(2); }

bool PrefillKernelTakes(const at::Tensor& queries, const at::Tensor& keys, const at::Tensor& values,
                        int64_t segment_size) {
  const int64_t dim = queries.size(2);
  return queries.is_cuda() && Is16Bit(queries.scalar_type()) &&
         keys.scalar_type() == queries.scalar_type() && RowsContiguous(keys) &&
         RowsContiguous(values) &&
         kernels::PrefillAttentionSupports(kvserve::KernelDType(queries.scalar_type()),
                                           static_cast<int32_t>(dim),
                                           static_cast<int32_t>(segment_size));
}

at::Tensor PrefillAttention(const at::Tensor& queries, const at::Tensor& keys,
                            const at::Tensor& values, const at::Tensor& blocks,
                            const at::Tensor& dense, int64_t segment_size, int64_t block_size,
                            int64_t key_offset) {
  TORCH_CHECK(PrefillKernelTakes(queries, keys, values, blocks.defined() ? segment_size : 0),
              "PrefillAttention: the kernel does not take these tensors");
  auto q = queries.contiguous();
  auto out = at::empty_like(q);
  kernels::PrefillAttentionArgs a;
  a.dtype = kvserve::KernelDType(q.scalar_type());
  a.num_heads = static_cast<int32_t>(q.size(1));
  a.kv_heads = static_cast<int32_t>(keys.size(0));
  a.head_dim = static_cast<int32_t>(q.size(2));
  a.queries = static_cast<int32_t>(q.size(0));
  a.keys = static_cast<int32_t>(keys.size(1));
  a.q = q.data_ptr();
  a.k = keys.data_ptr();
  a.key_head_stride = keys.stride(0);
  a.v = values.data_ptr();
  a.value_head_stride = values.stride(0);
  a.out = out.data_ptr();
  at::Tensor block_list, dense_flags;
  if (blocks.defined()) {
    block_list = blocks.to(q.device(), at::kInt).contiguous();
    dense_flags = dense.to(q.device(), at::kInt).contiguous();
    TORCH_CHECK(
        block_list.dim() == 3 && block_list.size(0) == keys.size(0) &&
            dense_flags.numel() == block_list.size(1),
        "PrefillAttention: blocks must be [kv_heads, segments, max_blocks], dense [segments]");
    a.blocks = block_list.data_ptr<int32_t>();
    a.dense = dense_flags.data_ptr<int32_t>();
    a.segments = static_cast<int32_t>(block_list.size(1));
    a.max_blocks = static_cast<int32_t>(block_list.size(2));
    a.segment_size = static_cast<int32_t>(segment_size);
    a.block_size = static_cast<int32_t>(block_size);
    a.key_offset = static_cast<int32_t>(key_offset);
  }
  Check(kernels::PrefillAttention(a, CurrentStream()), "PrefillAttention kernel");
  return out;
}

namespace {

// Same sizes and, along every dimension longer than 1, the same stride.
bool SameLayout(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t i = 0; i < a.dim(); ++i) {
    if (a.size(i) > 1 && a.stride(i) != b.stride(i)) return false;
  }
  return true;
}

// A CUDA tensor whose rows of 16-bit elements start on 16-byte boundaries: its data 16-byte
// aligned and every stride (of a dimension longer than 1) a multiple of 8 elements.
bool RowsAligned16(const at::Tensor& t) {
  if (!t.is_cuda() || reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) return false;
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (t.size(i) > 1 && t.stride(i) != 1 && t.stride(i) % 8 != 0) return false;
  }
  return true;
}

}  // namespace

void MergeAttention(const at::Tensor& a, const at::Tensor& lse_a, const at::Tensor& b,
                    const at::Tensor& lse_b, at::Tensor& out) {
  const auto dtype = a.scalar_type();
  TORCH_CHECK(
      a.dim() == 4 && Is16Bit(dtype) && b.scalar_type() == dtype && out.scalar_type() == dtype &&
          SameLayout(a, b) && SameLayout(a, out) && a.stride(3) == 1 && a.size(3) % 8 == 0 &&
          RowsAligned16(a) && RowsAligned16(b) && RowsAligned16(out),
      "MergeAttention: a, b and out must be 16-bit [batch, heads, rows, dim] CUDA tensors of one "
      "layout, dim a multiple of 8 and contiguous, rows 16-byte aligned");
  const int64_t stats = a.size(0) * a.size(1) * a.size(2);
  TORCH_CHECK(lse_a.scalar_type() == at::kFloat && lse_b.scalar_type() == at::kFloat &&
                  lse_a.is_contiguous() && lse_b.is_contiguous() && lse_a.numel() == stats &&
                  lse_b.numel() == stats,
              "MergeAttention: log-sum-exps must be contiguous float32 [batch, heads, rows]");
  kernels::AttentionMergeArgs m;
  m.dtype = kvserve::KernelDType(dtype);
  m.batch = static_cast<int32_t>(a.size(0));
  m.heads = static_cast<int32_t>(a.size(1));
  m.rows = static_cast<int32_t>(a.size(2));
  m.head_dim = static_cast<int32_t>(a.size(3));
  m.batch_stride = a.stride(0);
  m.head_stride = a.stride(1);
  m.row_stride = a.stride(2);
  m.a = a.data_ptr();
  m.b = b.data_ptr();
  m.out = out.data_ptr();
  m.lse_a = lse_a.data_ptr<float>();
  m.lse_b = lse_b.data_ptr<float>();
  Check(kernels::MergeAttention(m, CurrentStream()), "MergeAttention kernel");
}

at::Tensor AddRmsNorm(at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                      double eps) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "AddRmsNorm: x must be contiguous [rows, hidden]");
  TORCH_CHECK(!residual.defined() || (residual.sizes() == x.sizes() && residual.is_contiguous() &&
                                      residual.scalar_type() == x.scalar_type()),
              "AddRmsNorm: residual must match x");
  TORCH_CHECK(weight.numel() == x.size(1) && weight.scalar_type() == x.scalar_type(),
              "AddRmsNorm: weight must be [hidden] in x's dtype");
  auto out = at::empty_like(x);
  Check(kernels::AddRmsNorm(kvserve::KernelDType(x.scalar_type()), x.data_ptr(),
                            residual.defined() ? residual.data_ptr() : nullptr,
                            weight.contiguous().data_ptr(), out.data_ptr(), x.size(0), x.size(1),
                            static_cast<float>(eps), CurrentStream()),
        "AddRmsNorm kernel");
  return out;
}

at::Tensor SwiGlu(const at::Tensor& gate_up) {
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.size(1) % 2 == 0, "SwiGlu: gate_up must be [rows, 2w]");
  auto input = gate_up.contiguous();
  const int64_t width = input.size(1) / 2;
  auto out = at::empty({input.size(0), width}, input.options());
  Check(kernels::SwiGlu(kvserve::KernelDType(input.scalar_type()), input.data_ptr(), out.data_ptr(),
                        input.size(0), width, CurrentStream()),
        "SwiGlu kernel");
  return out;
}

namespace {

// x [a, b, dim] as the kernel's [positions, heads, dim] view, positions along `seq_dim`.
kernels::RopeArgs RopeView(const at::Tensor& x, const at::Tensor& out, int64_t seq_dim) {
  const int64_t other = 1 - seq_dim;
  kernels::RopeArgs a;
  a.dtype = kvserve::KernelDType(x.scalar_type());
  a.x = x.data_ptr();
  a.out = out.data_ptr();
  a.positions = x.size(seq_dim);
  a.heads = x.size(other);
  a.head_dim = x.size(2);
  a.x_position_stride = x.stride(seq_dim);
  a.x_head_stride = x.stride(other);
  a.out_position_stride = out.stride(seq_dim);
  a.out_head_stride = out.stride(other);
  return a;
}

}  // namespace

bool RopeKernelTakes(const at::Tensor& x, int64_t seq_dim) {
  if (!x.is_cuda() || x.dim() != 3 || (seq_dim != 0 && seq_dim != 1) || x.stride(2) != 1 ||
      !Is16Bit(x.scalar_type())) {
    return false;
  }
  // x in the output's place too: the contiguous output is aligned, and its strides are multiples
  // of head_dim, which RopeSupports asks to be a multiple of 16.
  return kernels::RopeSupports(RopeView(x, x, seq_dim));
}

at::Tensor Rope(const at::Tensor& x, const at::Tensor& positions, int64_t seq_dim,
                const at::Tensor& inv_freq) {
  TORCH_CHECK(RopeKernelTakes(x, seq_dim), "Rope: the kernel does not take x ", x.sizes());
  TORCH_CHECK(positions.numel() == x.size(seq_dim) && inv_freq.numel() * 2 == x.size(2) &&
                  inv_freq.scalar_type() == at::kFloat,
              "Rope: ", positions.numel(), " positions and ", inv_freq.numel(),
              " frequencies for x ", x.sizes());
  auto ids = positions.to(x.device(), at::kLong).contiguous();
  auto freq = inv_freq.to(x.device()).contiguous();
  auto out = at::empty(x.sizes(), x.options());
  auto a = RopeView(x, out, seq_dim);
  a.position_ids = ids.data_ptr<int64_t>();
  a.inv_freq = freq.data_ptr<float>();
  Check(kernels::Rope(a, CurrentStream()), "Rope kernel");
  return out;
}

}  // namespace kvserve::cuda
