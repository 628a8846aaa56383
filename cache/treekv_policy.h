// TREEKV: [sinks][tree][recent]; a token leaving the recent window enters the tree region, which
// evicts one of two neighbours at a cyclic pointer (Algorithm 1, averaged attention S/C).
// Implements policies.md §2 (TreeKV) with §0.5 items 3, 6, 8, 14, 17 and 19.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <vector>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"
#include "cache/policy_factory.h"

namespace kvserve {

struct TreeKvParams {
  int64_t sink_tokens = 4;     // S
  int64_t recent_tokens = 14;  // R
  int64_t tree_tokens = 14;    // T
  int64_t prefill_block = 32;  // b
  int64_t prompt_tokens = 0;   // the request's prompt, to recognise a one-shot prefill

  int64_t budget() const { return sink_tokens + tree_tokens + recent_tokens; }
};

// Positions are IN-CACHE: after every Update a layer's slots are in temporal order (sinks, tree,
// recent), so slot rank is the position.
//
// Per step (§0.5 item 8): every held token adds the key mass it received (Σ over the step's queries
// and the group's query heads, item 14) to S_j and the number of the step's queries that saw it to
// C_j; then the step's tokens are inserted in order, one Algorithm-1 eviction per token that
// overflows the tree, with the S/C values at the end of the step. A prompt that arrives whole in
// one step and exceeds the budget is compressed block-wise instead (§2.4, item 17).
//
// Decisions run on the host over per-(layer, KV head) S and C arrays; the key mass comes down once
// per layer and step, the kept slots go back as one KvCache::Keep. The pointer, the
// sink/tree/recent counts and thus the shapes are the same for every head. Stats: evicted_tokens
// counts tokens dropped; compression_events counts steps that dropped at least one token (layer 0).
class TreeKvPolicy : public CachePolicy {
 public:
  // Defaults and validation (§0.5 items 6 and 19); INVALID_ARGUMENT names the field.
  static absl::StatusOr<TreeKvParams> Resolve(const CacheSpec& spec, const PolicyContext& context);
  static PolicyDescription Describe();

  explicit TreeKvPolicy(const TreeKvParams& params) : params_(params) {}

  PositionMode position_mode() const override { return PositionMode::kInCache; }
  bool wants_key_mass() const override { return true; }
  int64_t Capacity(int64_t max_step_tokens) const override {
    return params_.budget() + max_step_tokens;
  }
  // Uses LayerStep::key_mass (tests may set it directly, e.g. to 1.0 per token for §0.5 item 3);
  // the one-shot prompt path recomputes the last-b-queries window from queries and keys.
  void Update(KvCache& cache, const LayerStep& step) override;

  // Averaged attention S/C of `layer`'s held slots, [kv_heads, length] float32 on the CPU.
  at::Tensor AveragedAttention(int64_t layer) const;

 private:
  struct LayerState {
    std::vector<float> score;  // S_j, [kv_heads * length] aligned with the cache's slots
    std::vector<float> count;  // C_j, same layout
    int64_t sinks = 0, tree = 0, recent = 0;  // region sizes, the same for every head
    int64_t pointer = 0;                      // 0-based idx over the tree region
  };

  void UpdateTokens(KvCache& cache, const LayerStep& step, LayerState& state);
  void UpdatePrompt(KvCache& cache, const LayerStep& step, LayerState& state);
  // Keeps the per-head slot lists `kept` [kv_heads * k] and realigns the state to them.
  void Keep(KvCache& cache, int64_t layer, LayerState& state, const std::vector<int64_t>& kept,
            const std::vector<float>& score, const std::vector<float>& count);

  TreeKvParams params_;
  std::vector<LayerState> layers_;
};

}  // namespace kvserve
