#include "model/criti_prefill_attention.h"

#include <c10/util/Exception.h>

namespace kvserve {

double CritiPrefillSequence::SkippedFraction() const {
  if (keys.causal == 0) return 0;
  return 1.0 - static_cast<double>(keys.attended) / static_cast<double>(keys.causal);
}

std::vector<AttentionOutput> AttendWithCritiPrefill(
    AttentionBackend& backend, int64_t layer, std::span<const AttentionInput> inputs,
    std::span<CritiPrefillSequence* const> sequences, std::span<const int64_t> first_queries) {
  TORCH_CHECK(sequences.size() == inputs.size() && first_queries.size() == inputs.size(),
              "AttendWithCritiPrefill: ", inputs.size(), " inputs, ", sequences.size(),
              " sequences, ", first_queries.size(), " positions");
  std::vector<AttentionOutput> outputs(inputs.size());
  std::vector<AttentionInput> dense;
  std::vector<size_t> dense_index;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const AttentionInput& in = inputs[i];
    const int64_t n = in.queries.size(0), m = in.keys.size(1);
    CritiPrefillSequence* sequence = sequences[i];
    const CritiPrefillChunk chunk{first_queries[i], sequence ? sequence->prompt_tokens : 0};
    if (sequence == nullptr || !HasSparseSegments(chunk, n, layer, sequence->params)) {
      if (sequence != nullptr) {
        const int64_t causal = CausalPairs(in.keys.size(0), n, m);
        sequence->keys.attended += causal;
        sequence->keys.causal += causal;
      }
      dense.push_back(in);
      dense_index.push_back(i);
      continue;
    }
    const SegmentBlocks blocks =
        SelectSegmentBlocks(in.queries, in.keys, chunk, layer, sequence->params, sequence->fusion);
    const AttendedKeys count = CountAttendedKeys(blocks, n, m);
    sequence->keys.attended += count.attended;
    sequence->keys.causal += count.causal;
    AttentionOutput& out = outputs[i];
    out.out = CritiPrefillAttend(in.queries, in.keys, in.values, blocks,
                                 in.want_key_mass ? &out.key_mass : nullptr);
  }
  if (!dense.empty()) {
    auto results = backend.Attend(dense);
    for (size_t j = 0; j < results.size(); ++j) outputs[dense_index[j]] = std::move(results[j]);
  }
  return outputs;
}

}  // namespace kvserve
