// The contract between the model, a request's KvCache and the policy that keeps it under budget
// (ARCHITECTURE.md, "The cache-policy contract"; policies.md §0).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cache/kv_cache.h"

namespace kvserve {

// How RoPE positions are assigned (policies.md §0.2).
enum class PositionMode {
  // Keys are rotated with their original stream position and stored rotated.
  kOriginal,
  // Positions are ranks within the cache; keys are stored un-rotated and rotated at every step.
  kInCache,
  // IN-CACHE positions for a cache of sinks and one window that is contiguous in the stream and
  // ends just before the step's tokens (StreamingLLM), without turning the window every step
  // (policies.md §4.1 [D]): keys are stored rotated with their stream positions and queries are
  // rotated with theirs, as kOriginal, so window keys keep their in-cache distance to the query;
  // at attention the sinks, slots [0, ring_layout(layer).begin), are turned on by
  // tokens_seen() - length(layer) (the query's stream position minus its in-cache rank), which
  // gives them theirs.
  kShiftedSinks,
};

// What a policy sees after one layer of one step (a prefill chunk or a decode token).
struct LayerStep {
  int64_t layer = 0;
  // Tokens of this step; they are the last `new_tokens` slots of the layer's cache.
  int64_t new_tokens = 0;
  // This step's queries and every held key as the attention saw them (rotated, so a policy can
  // recompute any attention statistic it needs): [new_tokens, num_heads, head_dim] and
  // [kv_heads, length, head_dim]. For kInCache policies the cache itself holds un-rotated keys,
  // for kShiftedSinks ones keys whose sinks are not yet turned.
  at::Tensor queries;
  at::Tensor keys;
  // Attention mass every held key received in this step, summed over the query heads of its group
  // and over the step's queries: [kv_heads, length] float32. Defined only if wants_key_mass().
  at::Tensor key_mass;
};

// Where the RoPE rank of an IN-CACHE slot comes from: rank = slot, except in the ring of slots
// [begin, begin + size), which holds a window whose oldest token is in slot `head`:
// rank = begin + (slot - head) mod size. A policy that evicts the oldest window token by writing
// the new token into its slot (StreamingLLM) keeps a ring; one whose slot order is neither
// temporal nor one ring (Cascading's circular sub-caches, TreeKV's tree) gives `ranks` instead.
struct RingLayout {
  int64_t begin = 0;
  int64_t size = 0;
  int64_t head = 0;
  // When not empty: slot i < ranks.size() has rank ranks[i] (the ring is ignored) and later slots
  // (a step's new tokens) rank = slot. The same for every head; owned by the policy, valid until
  // its next Update or CommitBatchedDecode.
  std::span<const int32_t> ranks;
};

// The ranks of slots [0, length) under `ring`: [length] int64 on `device`.
at::Tensor SlotRanks(const RingLayout& ring, int64_t length, at::Device device);

// A decode step's cache maintenance in a form one device kernel applies to many requests and to
// every layer at once (kernels/decode_maintenance.h), instead of Update per layer.
struct BatchedDecodeStep {
  enum class Rule {
    kAppendOnly,   // nothing to evict this step
    kRingVictim,   // the token in `ring_victim` leaves in every layer and head
    kLowestScore,  // scores += key mass; when `evict`, the lowest-scored old token leaves per head
    kSlotChain,    // scores (and counts) updated from the key mass, then tokens moved along `chain`
  };
  // How the last hop of a kSlotChain is decided, per layer and KV head (all earlier hops happen).
  enum class LastHop {
    kAlways,
    kIfNotWorse,   // if the score of the token arriving >= the score of the one it replaces
    kIfLeftWins,   // if S/C of slot `left` > S/C of slot `right` (before any move)
    kIfRightWins,  // otherwise
  };
  Rule rule = Rule::kAppendOnly;
  int64_t ring_victim = 0;
  at::Tensor scores;  // kLowestScore, kSlotChain: [layers, kv_heads, capacity] float32
  int64_t min_recent_position = 0;  // kLowestScore: tokens at positions >= this stay
  bool evict = false;  // kLowestScore; kSlotChain: a token leaves (the length does not grow)
  // kSlotChain. First every held slot's score becomes score_decay * score + m (the new token's:
  // m) with m the step's attention on it reduced over the group's query heads by `reduction`, and
  // its count (when `counts` [layers, kv_heads, capacity] float32 is defined) count + 1 (the new
  // token's: 1). Then the token in chain[0] moves to chain[1], the one it displaces to chain[2],
  // and so on; the token displaced from the last slot leaves (none if that slot was free), and so
  // does the one that would have made a last hop that `last_hop` refuses. Keys, values, positions,
  // scores and counts move together. kMax reads the attention's group-max key mass
  // (kernels::DecodeSequence::key_mass_group_max); kSum and kMean its group sum.
  enum class GroupReduction { kSum, kMean, kMax };
  at::Tensor counts;
  float score_decay = 1;
  GroupReduction reduction = GroupReduction::kSum;
  std::vector<int32_t> chain;
  LastHop last_hop = LastHop::kAlways;
  int32_t left = 0, right = 0;  // kIfLeftWins / kIfRightWins
  bool wants_key_mass() const { return rule == Rule::kLowestScore || rule == Rule::kSlotChain; }
};

// Counters a policy keeps for usage reports and metrics.
struct CacheStats {
  int64_t peak_tokens = 0;         // most tokens held in a layer at any time, within steps included
  int64_t evicted_tokens = 0;      // tokens dropped or merged away (counted in layer 0)
  int64_t compression_events = 0;  // compression passes (counted in layer 0)
};

class CachePolicy {
 public:
  virtual ~CachePolicy() = default;

  virtual PositionMode position_mode() const = 0;
  // True if Update needs LayerStep::key_mass; the attention backend computes it only then.
  virtual bool wants_key_mass() const { return false; }
  // Slots the request's KvCache needs when steps bring at most `max_step_tokens` new tokens.
  virtual int64_t Capacity(int64_t max_step_tokens) const = 0;
  // Tokens the request may hold at once, for admission against the KV pool.
  virtual int64_t ReservedTokens(int64_t max_step_tokens) const {
    return Capacity(max_step_tokens);
  }
  // The most new tokens the next step may bring for this request (FreqKV caps chunks; §0.5 item
  // 10).
  virtual int64_t MaxStepTokens(const KvCache& /*cache*/, int64_t wanted) const { return wanted; }

  // Called for every layer after the step's tokens were appended and attended; trims the layer.
  virtual void Update(KvCache& cache, const LayerStep& step) = 0;

  // IN-CACHE policies: how slots map to RoPE ranks in `layer` (default: rank = slot).
  virtual RingLayout ring_layout(int64_t /*layer*/) const { return {}; }

  // The maintenance of the next decode step (one new token; `cache` before its append) as a
  // batched rule, or nullopt when Update must run per layer. Each rule does exactly what Update
  // would do for that step.
  virtual std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& /*cache*/) {
    return std::nullopt;
  }
  // After a decode step whose maintenance a kernel applied as `step` planned (the kernel wrote the
  // cache; its lengths still count the new token): the host-side bookkeeping (lengths, ring head,
  // counters). The default suits kAppendOnly.
  virtual void CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step);

  const CacheStats& stats() const { return stats_; }

 protected:
  // What every batched decode step's bookkeeping shares: the peak (the step's token included),
  // then, if the kernel evicted a token, the shorter cache and the counters.
  void CommitDecodeToken(KvCache& cache, bool evicted);
  // Counts a trim of `evicted` tokens, once per step: in layer 0 only, and as a compression event
  // only if a token left.
  void CountEviction(int64_t layer, int64_t evicted) {
    if (layer != 0 || evicted <= 0) return;
    stats_.evicted_tokens += evicted;
    ++stats_.compression_events;
  }

  CacheStats stats_;
};

}  // namespace kvserve
