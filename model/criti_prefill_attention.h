// How LlamaModel runs CritiPrefill (prefill_and_heads.md §1.2, §1.8): for each sequence that is a
// CritiPrefill prompt chunk, in its sparse layers, the selection of model/criti_prefill.h and
// CritiPrefillAttend replace the attention backend; every other sequence of the batch goes through
// the backend in one call. The KV cache is untouched by this: the model appends every token's K/V
// and the cache policy's Update runs as usual, with the key mass the sparse attention gave.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <span>
#include <vector>

#include "model/attention_backend.h"
#include "model/criti_prefill.h"

namespace kvserve {

// One request's CritiPrefill prefill across its chunks; owned by the caller (the engine, per
// request), pointed to by the SequenceInput of each of its prompt chunks.
struct CritiPrefillSequence {
  CritiPrefillParams params;
  int64_t prompt_tokens = 0;  // T
  CritiPrefillFusion fusion;  // the current chunk's; restarted by each chunk's first sparse layer
  // (query, key, KV head) pairs attended, and those dense causal attention would have attended,
  // summed over the layers and chunks run so far.
  AttendedKeys keys;
  // The fraction of dense prefill's attention pairs skipped so far, in [0, 1].
  double SkippedFraction() const;
};

// One layer's attention for a batch. sequences[i] is where inputs[i] is a CritiPrefill chunk, or
// null; first_queries[i] is the stream position of inputs[i]'s first query. Sequences with sparse
// segments in this layer (HasSparseSegments) attend through CritiPrefillAttend, with key mass when
// inputs[i].want_key_mass; the others through `backend`.
std::vector<AttentionOutput> AttendWithCritiPrefill(
    AttentionBackend& backend, int64_t layer, std::span<const AttentionInput> inputs,
    std::span<CritiPrefillSequence* const> sequences, std::span<const int64_t> first_queries);

}  // namespace kvserve
