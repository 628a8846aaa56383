// The decode step's attention kernels over per-request caches: RoPE on the step's queries and keys
// with the new key and value appended to each request's cache, then attention of every query over
// its own cache (flash-decoding: split along the cache, then combined), grouped-query aware, with
// the attention mass each cached key received when a request asks for it.
//
// Every sequence of a batch is described by a DecodeSequence in device memory, so one launch serves
// requests whose caches live anywhere and the same launch can be captured in a CUDA graph and
// replayed with new contents of the table.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace kvserve::kernels {

// One sequence of the batch, one decode token. Element (layer, head, slot, dim) of the keys lives
// at keys + layer * layer_stride + head * key_head_stride + slot * head_dim + dim (elements), of
// the values at values + layer * layer_stride + head * value_head_stride + ...; the slot's original
// stream position at positions + layer * positions_layer_stride + head * positions_head_stride +
// slot; its key mass at key_mass + layer * mass_layer_stride + head * mass_head_stride + slot.
struct DecodeSequence {
  void* keys = nullptr;  // nullptr: a padding row, skipped by every kernel (its outputs are zero)
  void* values = nullptr;
  int64_t layer_stride = 0;
  int64_t key_head_stride = 0;
  int64_t value_head_stride = 0;
  int64_t* positions = nullptr;  // written by RopeAppend; may be nullptr for attention alone
  int64_t positions_layer_stride = 0;
  int64_t positions_head_stride = 0;
  // The step's key mass: Σ over the group's query heads of the query's attention on each held key,
  // float32; nullptr: not wanted. `logit_scratch` [kv_heads, group, scratch_stride] float32 then
  // holds the raw scores between the two attention kernels; scratch_stride >= the length.
  float* key_mass = nullptr;
  int64_t mass_layer_stride = 0;
  int64_t mass_head_stride = 0;
  float* logit_scratch = nullptr;
  int64_t scratch_stride = 0;
  // Stream position of the step's token (stored with the key) and the RoPE position of its query
  // and, when keys_rotated, of its key.
  int64_t position = 0;
  int64_t query_rank = 0;
  // 1: keys are stored rotated (ORIGINAL positions). 0: keys are stored un-rotated and rotated at
  // attention by their slot's rank in the cache (IN-CACHE positions): rank = slot, except that the
  // slots [ring_begin, ring_begin + ring_size) are a ring whose oldest token sits at ring_head,
  // rank = ring_begin + (slot - ring_head) mod ring_size.
  int32_t keys_rotated = 1;
  int32_t ring_begin = 0;
  int32_t ring_size = 0;
  int32_t ring_head = 0;
  // keys_rotated == 0 only: when not nullptr, the rank of slot i is slot_ranks[i] (device memory,
  // one entry per held slot, the same for every layer and head), and the ring is ignored.
  const int32_t* slot_ranks = nullptr;
  // keys_rotated == 1 only: the keys of slots [0, sink_slots) are turned on by sink_shift positions
  // at attention (StreamingLLM's sinks under PositionMode::kShiftedSinks: the query's stream
  // position minus its in-cache rank); 0: none.
  int32_t sink_slots = 0;
  int32_t sink_shift = 0;
  // key_mass != nullptr only: 1 asks for the MAX over the group's query heads of the query's
  // softmax probability on each held key instead of their sum (Cascading's group reduction,
  // policies.md §1.5 and §0.5 item 12).
  int32_t key_mass_group_max = 0;
};

struct DecodeShape {
  DType dtype = DType::kBFloat16;
  int32_t batch = 0;
  int32_t num_heads = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
};

// Head dims and groups (num_heads / kv_heads) the attention kernels are built for.
bool DecodeAttentionSupports(int32_t head_dim, int32_t group);

// For each sequence b of the batch and layer `layer`: reads the step's row of `qkv` [batch,
// (num_heads + 2 kv_heads) * head_dim] (queries, keys, values of the fused projection), rotates the
// queries with query_rank into `queries` [batch, num_heads, head_dim], and writes the key (rotated
// with `position` when keys_rotated, else as is), the value and `position` into slot
// lengths[layer * batch + b] - 1. RoPE as Hugging Face computes it: angle = float(pos) *
// inv_freq[i] (inv_freq [head_dim / 2] float32 on the device), cos and sin rounded to the dtype.
cudaError_t RopeAppend(const DecodeShape& shape, const DecodeSequence* sequences,
                       const int32_t* lengths, int32_t layer, const void* qkv, void* queries,
                       const float* inv_freq, cudaStream_t stream);

// Partial results between the two attention kernels, in device memory: o [batch, kv_heads, group,
// max_splits, head_dim] and (max, sum) [batch, kv_heads, group, max_splits, 2], float32.
struct DecodeWorkspace {
  float* partial_out = nullptr;
  float* partial_stats = nullptr;
  int32_t max_splits = 1;
};

// Floats the workspace needs for a shape and split count: {partial_out, partial_stats}.
struct DecodeWorkspaceSize {
  int64_t partial_out = 0;
  int64_t partial_stats = 0;
};
DecodeWorkspaceSize DecodeWorkspaceFloats(const DecodeShape& shape, int32_t max_splits);

// A split count that gives `multiprocessors` SMs several waves of blocks for the shape.
int32_t DecodeMaxSplits(const DecodeShape& shape, int32_t multiprocessors);

// out [batch, num_heads, head_dim] = softmax(q·kᵀ / √head_dim) v of each sequence's query over its
// lengths[layer * batch + b] held keys (the step's own key included), and the key mass where
// asked. `rope_table` [rows, head_dim / 2, 2] of the dtype (cos, sin of rank * inv_freq in
// float32, rounded to the dtype, as RopeAppend rounds them) serves keys_rotated == 0 and the
// sinks' shift; every rank and sink_shift must be < rows. REQUIRES:
// DecodeAttentionSupports(head_dim, num_heads / kv_heads); 16-byte aligned rows.
cudaError_t DecodeAttention(const DecodeShape& shape, const DecodeSequence* sequences,
                            const int32_t* lengths, int32_t layer, const void* queries, void* out,
                            const void* rope_table, const DecodeWorkspace& workspace,
                            cudaStream_t stream);

}  // namespace kvserve::kernels
