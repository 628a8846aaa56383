#include "model/criti_prefill_cudnn.h"

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdint>

#include "model/cuda_ops.h"
#include "model/cudnn_attention.h"

namespace kvserve::cuda {
namespace {

#if TORCH_VERSION_MAJOR >= 2

// One run: queries q [b, heads, L, dim] read `past` keys [b, kv_heads, P, dim] (P may be 0) and,
// causally, their own [b, kv_heads, L, dim]; the result goes to `out` (a view, like q).
void AttendRun(const at::Tensor& q, const at::Tensor& past_k, const at::Tensor& past_v,
               const at::Tensor& own_k, const at::Tensor& own_v, at::Tensor out) {
  const bool merge = past_k.size(2) > 0;
  const Attended own = CudnnAttention(q, own_k, own_v, /*causal=*/true, /*want_lse=*/merge);
  if (!merge) {
    out.copy_(own.out);
    return;
  }
  const Attended past = CudnnAttention(q, past_k, past_v, /*causal=*/false, /*want_lse=*/true);
  MergeAttention(past.out, past.lse, own.out, own.lse, out);
}

// The listed blocks `ids` [kv_heads, b, listed] (int32 block ids) of one KV tensor [kv_heads, m,
// dim], gathered as [b, kv_heads, listed·B, dim]: one index_select over rows of whole blocks.
at::Tensor GatherBlocks(const at::Tensor& kv, const at::Tensor& ids, int64_t first_held,
                        int64_t block_size) {
  const int64_t kv_heads = kv.size(0), dim = kv.size(2), row = block_size * dim;
  const int64_t per_head = kv.stride(0) / row;
  auto rows = kv.as_strided({(kv_heads - 1) * per_head + kv.size(1) / block_size, row}, {row, 1});
  auto head = at::arange(kv_heads, ids.options().dtype(at::kLong)).view({kv_heads, 1, 1});
  auto index = (ids.to(at::kLong) - first_held + head * per_head).transpose(0, 1).reshape(-1);
  return rows.index_select(0, index).view({ids.size(1), kv_heads, ids.size(2) * block_size, dim});
}

#endif

}  // namespace

bool CritiPrefillCudnnTakes(const at::Tensor& queries, const at::Tensor& keys,
                            const at::Tensor& values, const SegmentBlocks& blocks) {
#if TORCH_VERSION_MAJOR >= 2
  if (!CudnnAttentionTakes(queries, keys, values)) return false;
  const int64_t row = blocks.block_size * queries.size(2);
  const auto segments = static_cast<size_t>(blocks.blocks.size(1));
  const int64_t offset = FirstKeyPosition(blocks, queries.size(0), keys.size(1));
  return RowsContiguous(keys) && RowsContiguous(values) && keys.stride(0) % row == 0 &&
         values.stride(0) % row == 0 && offset % blocks.block_size == 0 &&
         blocks.host_dense.size() == segments && blocks.host_listed.size() == segments;
#else
  (void)queries, (void)keys, (void)values, (void)blocks;
  return false;
#endif
}

at::Tensor CritiPrefillAttendCudnn(const at::Tensor& queries, const at::Tensor& keys,
                                   const at::Tensor& values, const SegmentBlocks& blocks) {
  TORCH_CHECK(CritiPrefillCudnnTakes(queries, keys, values, blocks),
              "CritiPrefillAttendCudnn: cuDNN does not take these inputs");
#if TORCH_VERSION_MAJOR >= 2
  const auto q = queries.contiguous();
  const int64_t n = q.size(0), heads = q.size(1), dim = q.size(2);
  const int64_t kv_heads = keys.size(0), held = keys.size(1) - n;
  const int64_t s = blocks.segment_size, b = blocks.block_size;
  const int64_t first_held = FirstKeyPosition(blocks, n, keys.size(1)) / b;
  const int64_t segments = blocks.blocks.size(1);
  auto out = at::empty_like(q);
  // Rows [first, first + batch·len) of a [n, heads, dim] tensor as [batch, heads, len, dim].
  auto rows = [&](const at::Tensor& t, int64_t first, int64_t batch, int64_t len) {
    return t.narrow(0, first, batch * len).view({batch, len, heads, dim}).transpose(1, 2);
  };
  // The keys or values at indices [first, first + batch·len) as [b, kv_heads, L, dim].
  auto own = [&](const at::Tensor& t, int64_t first, int64_t batch, int64_t len) {
    return t.narrow(1, first, batch * len).view({kv_heads, batch, len, dim}).transpose(0, 1);
  };
  auto length = [&](int64_t i) { return std::min(s, n - i * s); };
  for (int64_t i = 0; i < segments;) {
    const bool dense = blocks.host_dense[i] != 0;
    const int64_t listed = blocks.host_listed[i], len = length(i);
    int64_t j = i + 1;
    while (j < segments && (blocks.host_dense[j] != 0) == dense &&
           (dense || (blocks.host_listed[j] == listed && length(j) == len))) {
      ++j;
    }
    const int64_t first = i * s;
    if (dense) {  // one run of every query in segments [i, j): the whole prefix, then causal
      const int64_t rows_in_run = std::min(n, j * s) - first;
      AttendRun(rows(q, first, 1, rows_in_run), keys.narrow(1, 0, held + first).unsqueeze(0),
                values.narrow(1, 0, held + first).unsqueeze(0),
                own(keys, held + first, 1, rows_in_run), own(values, held + first, 1, rows_in_run),
                rows(out, first, 1, rows_in_run));
    } else {  // j - i segments of len queries in a batch
      const int64_t batch = j - i;
      auto ids = blocks.blocks.narrow(1, i, batch).narrow(2, 0, listed);
      AttendRun(rows(q, first, batch, len), GatherBlocks(keys, ids, first_held, b),
                GatherBlocks(values, ids, first_held, b), own(keys, held + first, batch, len),
                own(values, held + first, batch, len), rows(out, first, batch, len));
    }
    i = j;
  }
  return out;
#else
  return {};
#endif
}

}  // namespace kvserve::cuda
