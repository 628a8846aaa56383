// Prefill attention of one sequence's chunk over its keys on the tensor cores (mma.sync, bf16 or
// fp16 in, float32 accumulation and softmax, output in the input dtype), causal, grouped-query
// aware (the query heads of a KV head share each key tile), optionally block-sparse per query
// segment (CritiPrefill, prefill_and_heads.md §4.3): a sparse segment reads only its listed key
// blocks and, causally, its own keys.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace kvserve::kernels {

struct PrefillAttentionArgs {
  DType dtype = DType::kBFloat16;  // kFloat16 or kBFloat16
  int32_t num_heads = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  // n queries and m >= n keys; query i sits at key index m - n + i and sees keys 0..m-n+i.
  int32_t queries = 0;
  int32_t keys = 0;
  const void* q = nullptr;  // [n, num_heads, head_dim]
  // Key and value (head, index, dim) at k + head * key_head_stride + index * head_dim + dim.
  const void* k = nullptr;
  int64_t key_head_stride = 0;
  const void* v = nullptr;
  int64_t value_head_stride = 0;
  void* out = nullptr;  // [n, num_heads, head_dim]
  // Block sparsity; blocks == nullptr: every query reads every earlier key. Segment s holds the
  // queries [s * segment_size, (s + 1) * segment_size); block b the keys [b * block_size,
  // (b + 1) * block_size). A segment with dense[s] != 0 reads every earlier key; any other reads
  // the blocks listed in blocks[(kv_head * segments + s) * max_blocks ...] (ascending, -1 after
  // the last, each ending at or before the segment's first key index m - n + s * segment_size),
  // then its own keys causally.
  const int32_t* blocks = nullptr;
  const int32_t* dense = nullptr;
  int32_t segments = 0;
  int32_t max_blocks = 0;
  int32_t segment_size = 0;
  int32_t block_size = 0;
  // Block ids count from key index -key_offset: block b holds the key indices
  // [b * block_size - key_offset, (b + 1) * block_size - key_offset), those < 0 absent (a
  // compressed cache numbers its held keys back from the chunk's start).
  int32_t key_offset = 0;
};

// Whether the kernel takes a head dim and, when sparse (segment_size > 0), the segment size
// (a multiple of the 64-query tile).
bool PrefillAttentionSupports(DType dtype, int32_t head_dim, int32_t segment_size);

cudaError_t PrefillAttention(const PrefillAttentionArgs& args, cudaStream_t stream);

}  // namespace kvserve::kernels
