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
#include "cache/stepped_layout.h"

namespace kvserve {

struct TreeKvParams {
  int64_t sink_tokens = 4;     // S
  int64_t recent_tokens = 14;  // R
  int64_t tree_tokens = 14;    // T
  int64_t prefill_block = 32;  // b
  int64_t prompt_tokens = 0;   // the request's prompt, to recognise a one-shot prefill

  int64_t budget() const { return sink_tokens + tree_tokens + recent_tokens; }
};

// Layout (IN-CACHE positions): slots [0, S) hold the sinks, [S, S + R) the recent window as a
// ring, [S + R, S + R + T) the tree in any slot order; one table of ranks (temporal order: sinks,
// tree, recent) serves every layer and head (ring_layout). A step moves at most three tokens per
// head: the new token into the ring slot of the oldest recent token, that one into the tree, and
// at the pointer the pair's survivor into one fixed slot of the pair, so the freed slot is the
// same in every head.
//
// Per step (§0.5 item 8): every held token adds the key mass it received (Σ over the step's queries
// and the group's query heads, item 14) to S_j and the number of the step's queries that saw it to
// C_j; then the step's tokens are inserted in order, one Algorithm-1 eviction per token that
// overflows the tree, with the S/C values at the end of the step. A prompt that arrives whole in
// one step and exceeds the budget is compressed block-wise instead (§2.4, item 17).
//
// Update decides on the host (S and C come down once per layer, the kept slots go back as one
// KvCache::Keep); a decode step in a batch is one chain of slots whose last hop is the pair's
// decision (PlanBatchedDecode), applied by one kernel to every layer and head. Stats:
// evicted_tokens counts tokens dropped; compression_events counts steps that dropped at least one
// token (layer 0).
class TreeKvPolicy : public CachePolicy {
 public:
  // Defaults and validation (§0.5 items 6 and 19); INVALID_ARGUMENT names the field.
  static absl::StatusOr<TreeKvParams> Resolve(const CacheSpec& spec, const PolicyContext& context);
  static PolicyDescription Describe();

  explicit TreeKvPolicy(const TreeKvParams& params)
      : params_(params), layout_(Structure{0, 0, 0, 0, params.sink_tokens, {}}) {}

  PositionMode position_mode() const override { return PositionMode::kInCache; }
  bool wants_key_mass() const override { return true; }
  int64_t Capacity(int64_t max_step_tokens) const override {
    return params_.budget() + max_step_tokens;
  }
  // Uses LayerStep::key_mass (tests may set it directly, e.g. to 1.0 per token for §0.5 item 3);
  // the one-shot prompt path recomputes the last-b-queries window from queries and keys.
  void Update(KvCache& cache, const LayerStep& step) override;
  RingLayout ring_layout(int64_t layer) const override;
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override;
  void CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) override;

  // Averaged attention S/C of `layer`'s held slots in slot order, [kv_heads, length] float32 on
  // the CPU.
  at::Tensor AveragedAttention(const KvCache& cache, int64_t layer) const;

 private:
  // Where the tokens are; the same for every layer and head.
  struct Structure {
    int64_t sinks = 0, tree = 0, recent = 0;  // region sizes
    int64_t pointer = 0;                      // 0-based idx over the tree region
    int64_t ring_head = 0;                    // slot of the oldest recent token
    std::vector<int32_t> tree_slots;          // the tree's slots, oldest first
  };
  // One token's insertion as a chain of slots (BatchedDecodeStep).
  struct Insertion {
    std::vector<int32_t> chain;
    BatchedDecodeStep::LastHop last_hop = BatchedDecodeStep::LastHop::kAlways;
    int32_t left = 0, right = 0;
    bool grows = false;
  };

  // Inserts the token now in cache slot `slot` into `structure`.
  Insertion Insert(Structure& structure, int64_t slot) const;
  std::vector<int32_t> Ranks(const Structure& structure) const;
  void UpdateTokens(KvCache& cache, const LayerStep& step, Structure& structure);
  void UpdatePrompt(KvCache& cache, const LayerStep& step, Structure& structure);
  // Keeps the per-head slot lists `kept` [kv_heads * k] and realigns S and C to them.
  void Keep(KvCache& cache, int64_t layer, const std::vector<int64_t>& kept,
            const std::vector<float>& score, const std::vector<float>& count);
  // S and C, [layers, kv_heads, capacity] float32 on the cache's device, allocated at first use.
  void EnsureStorage(const KvCache& cache);

  TreeKvParams params_;
  SteppedLayout<Structure> layout_;
  Structure planned_;  // PlanBatchedDecode's structure after the step
  at::Tensor score_, count_;
};

}  // namespace kvserve
