// CritiPrefill (prefill_and_heads.md §1): segment-wise sparse prefill attention. A prompt chunk's
// queries are cut into segments of S tokens and the keys before them into blocks of B; each sparse
// segment reads only the k blocks its criticality scores rank highest, plus its own keys causally.
// This file is the reference (torch ops, CPU and CUDA tensors) and the seam with the GPU paths:
// SelectSegmentBlocks produces a SegmentBlocks, CritiPrefillAttend consumes it.
//
// Positions. Keys are numbered so that the chunk's own keys (the last n of `keys`) sit at the
// stream positions of its queries: key j of m is at position j + first_query - (m - n). For a cache
// that holds every earlier token (FULL, and every policy before it first evicts) that is the key's
// stream position. Under a compressed cache the held keys are numbered back from the chunk's start,
// so blocks still end on segment starts; blocks at positions below first_query - (m - n) are then
// partly or wholly absent: a block lists only if it holds a key, and reads just the keys it holds.
//
// Not thread-safe per CritiPrefillFusion; the free functions are pure.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "model/criti_prefill_params.h"

namespace kvserve {

// Where a prompt chunk sits in its prompt.
struct CritiPrefillChunk {
  int64_t first_query = 0;    // stream position of the chunk's first query, a multiple of S
  int64_t prompt_tokens = 0;  // T; the segment holding position T-1 is the prompt's final one
};

// §1.2 step 11: a segment starting at stream position `start` is dense iff start < τ or it is the
// prompt's final segment (start + S >= T).
bool IsDenseSegment(int64_t start, int64_t prompt_tokens, const CritiPrefillParams& params);

// Whether layer `layer` of a chunk of n queries has any sparse segment: layer >= dense_layers, the
// chunk is cut on segment boundaries (first_query and first_query + n multiples of S, or the chunk
// ends the prompt), and some segment of it is not dense. A chunk that is not cut so is one piece of
// a segment split by the batch budget or a policy's step cap; it runs dense.
bool HasSparseSegments(const CritiPrefillChunk& chunk, int64_t n, int64_t layer,
                       const CritiPrefillParams& params);

// One sequence's selection for one chunk in one layer: the format the block-sparse kernel reads.
struct SegmentBlocks {
  int64_t first_query = 0;   // stream position of the chunk's first query (a multiple of S)
  int64_t segment_size = 0;  // S
  int64_t block_size = 0;    // B
  // int32 [kv_heads, segments, max_blocks]: for a sparse segment, the ids of the earlier key blocks
  // it reads (block id = key position / B; every such block ends at or before the segment's start),
  // ascending, padded with -1 at the end. Rows of dense segments are all -1.
  at::Tensor blocks;
  // bool [segments]: a dense segment reads every key before it, causally, and ignores `blocks`.
  at::Tensor dense;
  // Host copies, per segment, of whether it is dense and of how many blocks each KV head's row
  // lists (the same for every head), filled by SelectSegmentBlocks so that counting the attended
  // keys needs no read from the device; empty when the producer did not fill them.
  std::vector<uint8_t> host_dense;
  std::vector<int64_t> host_listed;
};
// The stream position of key 0 of the m keys a chunk of n queries attends to (the numbering at the
// top of this file): first_query - (m - n).
inline int64_t FirstKeyPosition(const SegmentBlocks& blocks, int64_t n, int64_t m) {
  return blocks.first_query - (m - n);
}

// Semantics: the chunk's n queries are cut every S from first_query into ceil(n / S) segments (only
// the prompt's final one may be shorter). The query at stream position p in segment s reads, if
// dense[s], every key at position <= p; else the keys of its listed blocks plus the keys of its own
// segment at positions <= p.

// The fused block-probability matrix F of one chunk's forward (§1.2 step 9): each layer's selection
// reads it, and the chunk's first sparse layer starts it afresh, so one object serves every chunk
// of a request in turn. It also keeps what SelectSegmentBlocks derives from a chunk's geometry
// alone (which blocks each segment may read, which segments are dense), built on the keys' device
// by the chunk's first layer and reused by its later ones.
class CritiPrefillFusion {
 public:
  CritiPrefillFusion();
  ~CritiPrefillFusion();
  CritiPrefillFusion(CritiPrefillFusion&&) noexcept;
  CritiPrefillFusion& operator=(CritiPrefillFusion&&) noexcept;

  // F ← P when `restart` or F has another shape, else F ← 0.25·F + 0.75·P. Returns F.
  const at::Tensor& Fuse(const at::Tensor& probabilities, bool restart);
  // [kv_heads, profiled segments, blocks] float32; undefined before the first Fuse.
  const at::Tensor& fused() const { return fused_; }

  // SelectSegmentBlocks's geometry tables; opaque outside model/criti_prefill.cc.
  struct ChunkTables;
  std::unique_ptr<ChunkTables>& tables() { return tables_; }

 private:
  at::Tensor fused_;
  std::unique_ptr<ChunkTables> tables_;
};

// §1.2 steps 3-8 for a chunk: per KV head, the fp32 softmax over key blocks of each profiled
// segment's criticality scores, [kv_heads, profiled segments, blocks]. Profiled segments are the
// chunk's segments but the prompt's final one; blocks are those of positions [0, first_query +
// profiled·S). Entries of blocks a segment may not read (not ending at or before its start, or
// holding no key) are 0, and a row with none it may read is uniform.
// queries: [n, num_heads, d] rotated; keys: [kv_heads, m, d] rotated, the chunk's own n last.
at::Tensor BlockProbabilities(const at::Tensor& queries, const at::Tensor& keys,
                              const CritiPrefillChunk& chunk, const CritiPrefillParams& params);

// §1.2 steps 3-11 for one chunk in one layer: scores, fusion (through `fusion`; restarted at layer
// dense_layers), top-k per (KV head, segment) by (fused probability descending, block ascending),
// always reading the first/local blocks, dense segments per IsDenseSegment. A sparse segment lists
// min(kept_blocks, blocks it may read) blocks.
// REQUIRES: chunk.first_query % S == 0, layer >= params.dense_layers.
SegmentBlocks SelectSegmentBlocks(const at::Tensor& queries, const at::Tensor& keys,
                                  const CritiPrefillChunk& chunk, int64_t layer,
                                  const CritiPrefillParams& params, CritiPrefillFusion& fusion);

// Which keys each query reads under `blocks`: bool [kv_heads, n, m] (the oracle's mask).
at::Tensor SegmentBlocksMask(const SegmentBlocks& blocks, int64_t n, int64_t m);

// (query, key, KV head) pairs read under `blocks`, and under dense causal attention, for n queries
// against m keys (computed from the lists, without a mask; from their host copies alone, with no
// device read, when they are filled and the first held block is whole).
struct AttendedKeys {
  int64_t attended = 0;
  int64_t causal = 0;
};
AttendedKeys CountAttendedKeys(const SegmentBlocks& blocks, int64_t n, int64_t m);
// Dense causal attention's (query, key, KV head) pairs for the last n of m keys' queries.
int64_t CausalPairs(int64_t kv_heads, int64_t n, int64_t m);

// The oracle: attention of `queries` [n, num_heads, d] (rotated) over `keys` and `values`
// [kv_heads, m, d] (rotated; every key the chunk may see, its own n last) restricted by `blocks`,
// from a boolean mask and torch ops; float32 scores and softmax, scale 1/sqrt(d), grouped-query.
// Returns [n, num_heads, d] in the queries' dtype. When `key_mass` is given it receives the mass
// the sparse attention gave each key, summed over the group's heads and the queries: [kv_heads, m]
// float32, 0 for keys no query read (what H2O and Cascading accumulate).
at::Tensor CritiPrefillAttendReference(const at::Tensor& queries, const at::Tensor& keys,
                                       const at::Tensor& values, const SegmentBlocks& blocks,
                                       at::Tensor* key_mass = nullptr);

// The dispatch point, same contract: on CUDA without key mass, cuDNN (model/criti_prefill_cudnn.h)
// or else the block-sparse kernel where they take the inputs; otherwise the reference.
at::Tensor CritiPrefillAttend(const at::Tensor& queries, const at::Tensor& keys,
                              const at::Tensor& values, const SegmentBlocks& blocks,
                              at::Tensor* key_mass = nullptr);

}  // namespace kvserve
