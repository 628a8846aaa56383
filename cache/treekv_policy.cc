#include "cache/treekv_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <numeric>

#include "cache/policy_params.h"
#include "cache/policy_tensors.h"

namespace kvserve {

absl::StatusOr<TreeKvParams> TreeKvPolicy::Resolve(const CacheSpec& spec,
                                                   const PolicyContext& context) {
  auto params = PolicyParams::Read(
      spec, "treekv", {"sink_tokens", "recent_tokens", "tree_tokens", "prefill_block"});
  if (!params.ok()) return params.status();
  const int64_t budget = params->budget();
  TreeKvParams out;
  out.prompt_tokens = context.prompt_tokens;
  auto sinks = params->Int("sink_tokens", 4, 0, budget);
  if (!sinks.ok()) return sinks.status();
  out.sink_tokens = *sinks;
  // §0.5 item 6: R = ⌊(B − S)/2⌋, T the rest; a request that sets T but not R gets R = B − S − T.
  int64_t default_recent = std::max<int64_t>(0, (budget - out.sink_tokens) / 2);
  if (params->Has("tree_tokens") && !params->Has("recent_tokens")) {
    auto tree = params->Int("tree_tokens", 1, 1, budget);
    if (!tree.ok()) return tree.status();
    default_recent = std::max<int64_t>(0, budget - out.sink_tokens - *tree);
  }
  auto recent = params->Int("recent_tokens", default_recent, 0, budget);
  if (!recent.ok()) return recent.status();
  out.recent_tokens = *recent;
  const int64_t rest = budget - out.sink_tokens - out.recent_tokens;
  if (rest < 1) {
    return FieldError(params->Blame({"recent_tokens", "sink_tokens"}),
                      absl::StrCat("leaves no tree: budget_tokens - sink_tokens - recent_tokens = ",
                                   rest, " must be >= 1 (budget ", budget, ", sink_tokens ",
                                   out.sink_tokens, ", recent_tokens ", out.recent_tokens, ")"));
  }
  auto tree = params->Int("tree_tokens", rest, 1, budget);
  if (!tree.ok()) return tree.status();
  out.tree_tokens = *tree;
  if (out.budget() != budget) {
    return FieldError(params->Field("tree_tokens"),
                      absl::StrCat("must be budget_tokens - sink_tokens - recent_tokens = ", rest,
                                   ", got ", out.tree_tokens));
  }
  auto block = params->Int("prefill_block", 32, 1, int64_t{1} << 20);
  if (!block.ok()) return block.status();
  out.prefill_block = *block;
  return out;
}

PolicyDescription TreeKvPolicy::Describe() {
  return {
      CachePolicyKind::kTreeKv,
      true,
      "sinks + a tree region + a recent window; the tree evicts one of two neighbours at a "
      "cyclic pointer by averaged attention, thinning old context; positions within the cache",
      {{"sink_tokens",
        "attention-sink tokens, never evicted (0 with recent_tokens 0: the "
        "paper's pure algorithm)",
        "4"},
       {"recent_tokens", "most recent tokens, never evicted",
        "(budget - sink_tokens) / 2, rounded down; budget - sink_tokens - tree_tokens when "
        "only tree_tokens is set"},
       {"tree_tokens", "tokens of the tree region; the three parts must add up to the budget",
        "budget - sink_tokens - recent_tokens"},
       {"prefill_block", "block size b of the one-shot prompt compression and its window", "32"}}};
}

void TreeKvPolicy::EnsureStorage(const KvCache& cache) {
  if (score_.defined()) return;
  const KvCacheShape& shape = cache.shape();
  const auto options = at::TensorOptions().dtype(at::kFloat).device(shape.device);
  score_ = at::zeros({shape.num_layers, shape.num_kv_heads, cache.capacity()}, options);
  count_ = at::ones({shape.num_layers, shape.num_kv_heads, cache.capacity()}, options);
}

RingLayout TreeKvPolicy::ring_layout(int64_t layer) const {
  RingLayout layout;
  layout.ranks = layout_.ranks(layer);
  return layout;
}

void TreeKvPolicy::Update(KvCache& cache, const LayerStep& step) {
  EnsureStorage(cache);
  const int64_t length = cache.length(step.layer), held = length - step.new_tokens;
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  const int64_t seen = cache.tokens_seen();
  Structure structure = layout_.Begin(step.layer, cache.shape().num_layers, seen);
  TORCH_CHECK(held == structure.sinks + structure.tree + structure.recent, "TreeKvPolicy: layer ",
              step.layer, " holds ", held, " tokens, the policy expected ",
              structure.sinks + structure.tree + structure.recent);
  const bool whole_prompt =
      held == 0 && (params_.prompt_tokens == 0 || step.new_tokens == params_.prompt_tokens);
  if (whole_prompt && length > params_.budget() && params_.tree_tokens >= params_.prefill_block) {
    UpdatePrompt(cache, step, structure);
  } else {
    UpdateTokens(cache, step, structure);
  }
  std::vector<int32_t> ranks = Ranks(structure);
  layout_.Finish(step.layer, seen + step.new_tokens, std::move(structure), std::move(ranks));
}

TreeKvPolicy::Insertion TreeKvPolicy::Insert(Structure& s, int64_t slot) const {
  Insertion out;
  // The stream's first tokens fill the sinks, then the window, in slot order: `slot` is then the
  // next free slot of its region.
  if (s.sinks < params_.sink_tokens) {
    ++s.sinks;
    out.grows = true;
    return out;
  }
  const int64_t window = params_.recent_tokens, sinks = params_.sink_tokens;
  if (s.recent < window) {
    ++s.recent;
    out.grows = true;
    return out;
  }
  auto to = [&](int64_t at) { out.chain.push_back(static_cast<int32_t>(at)); };
  to(slot);
  // The token leaving the window (or, without one, the new token) enters the tree.
  int64_t entering = slot;
  if (window > 0) {
    entering = s.ring_head;
    to(entering);  // the new token takes the oldest recent token's slot
    s.ring_head = sinks + (s.ring_head - sinks + 1) % window;
  }
  if (s.tree < params_.tree_tokens) {
    const int64_t free = sinks + window + s.tree;  // == slot: nothing was evicted yet
    if (window > 0) to(free);
    s.tree_slots.push_back(static_cast<int32_t>(free));
    ++s.tree;
    out.grows = true;
    return out;
  }
  // Algorithm 1 over the tree and the entering token: scope {idx, idx + 1}; the left token
  // survives only if strictly better.
  const int64_t idx = s.pointer;
  if (idx + 1 < params_.tree_tokens) {
    // The survivor ends in the right token's slot, the entering token in the left one's: the
    // freed slot (the left) is the same in every head, and becomes the tree's newest.
    const int32_t left = s.tree_slots[idx], right = s.tree_slots[idx + 1];
    to(left);
    to(right);
    out.last_hop = BatchedDecodeStep::LastHop::kIfLeftWins;
    out.left = left;
    out.right = right;
    s.tree_slots.erase(s.tree_slots.begin() + idx);
    s.tree_slots.push_back(left);
  } else {
    // The pair is the tree's newest and the entering token: the survivor takes the first's slot.
    const int32_t left = s.tree_slots[idx];
    to(left);
    out.last_hop = BatchedDecodeStep::LastHop::kIfRightWins;
    out.left = left;
    out.right = static_cast<int32_t>(entering);
  }
  s.pointer = (s.pointer + 1) % params_.tree_tokens;
  return out;
}

std::vector<int32_t> TreeKvPolicy::Ranks(const Structure& s) const {
  std::vector<int32_t> ranks(s.sinks + s.tree + s.recent);
  std::iota(ranks.begin(), ranks.begin() + s.sinks, 0);
  for (int64_t q = 0; q < s.tree; ++q) ranks[s.tree_slots[q]] = static_cast<int32_t>(s.sinks + q);
  const int64_t sinks = params_.sink_tokens;
  for (int64_t t = 0; t < s.recent; ++t) {
    const int64_t age = ((t - (s.ring_head - sinks)) % s.recent + s.recent) % s.recent;
    ranks[sinks + t] = static_cast<int32_t>(s.sinks + s.tree + age);
  }
  return ranks;
}

void TreeKvPolicy::UpdateTokens(KvCache& cache, const LayerStep& step, Structure& structure) {
  TORCH_CHECK(step.key_mass.defined(), "TreeKvPolicy needs LayerStep::key_mass");
  const int64_t length = cache.length(step.layer), n = step.new_tokens, held = length - n;
  const int64_t kv_heads = cache.shape().num_kv_heads;
  std::vector<float> score = ToHost(step.key_mass);  // [kv_heads * length]
  const std::vector<float> old_score = ToHost(score_[step.layer].narrow(1, 0, held));
  const std::vector<float> old_count = ToHost(count_[step.layer].narrow(1, 0, held));
  std::vector<float> count(kv_heads * length);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t j = 0; j < length; ++j) {
      const int64_t at = h * length + j;
      // Query i of the step sits at slot held + i and sees slots <= held + i.
      count[at] = static_cast<float>(j < held ? n : n - (j - held));
      if (j < held) {
        score[at] += old_score[h * held + j];
        count[at] += old_count[h * held + j];
      }
    }
  }

  // content[h * length + s]: the step's slot whose token cache slot s holds in head h.
  std::vector<int64_t> content(kv_heads * length);
  for (int64_t h = 0; h < kv_heads; ++h) {
    std::iota(content.begin() + h * length, content.begin() + (h + 1) * length, 0);
  }
  for (int64_t slot = held; slot < length; ++slot) {
    const Insertion insertion = Insert(structure, slot);
    const std::vector<int32_t>& chain = insertion.chain;
    const int64_t hops = static_cast<int64_t>(chain.size()) - 1;
    for (int64_t h = 0; h < kv_heads && hops > 0; ++h) {
      int64_t* c = content.data() + h * length;
      auto averaged = [&](int64_t at) {
        return static_cast<double>(score[h * length + c[at]]) /
               static_cast<double>(count[h * length + c[at]]);
      };
      bool last = true;
      if (insertion.last_hop != BatchedDecodeStep::LastHop::kAlways) {
        const bool left_wins = averaged(insertion.left) > averaged(insertion.right);
        last = left_wins == (insertion.last_hop == BatchedDecodeStep::LastHop::kIfLeftWins);
      }
      int64_t carried = c[chain[0]];
      for (int64_t k = 1; k <= (last ? hops : hops - 1); ++k) std::swap(carried, c[chain[k]]);
    }
  }

  const int64_t kept = structure.sinks + structure.tree + structure.recent;
  std::vector<int64_t> order(kv_heads * kept);
  for (int64_t h = 0; h < kv_heads; ++h) {
    std::copy(content.begin() + h * length, content.begin() + h * length + kept,
              order.begin() + h * kept);
  }
  Keep(cache, step.layer, order, score, count);
}

void TreeKvPolicy::UpdatePrompt(KvCache& cache, const LayerStep& step, Structure& structure) {
  const int64_t n = cache.length(step.layer), kv_heads = cache.shape().num_kv_heads;
  const int64_t b = params_.prefill_block;
  // The observation window: the last b prompt queries; a token's score is their mean attention,
  // summed over the group (§2.4, §0.5 item 14).
  const int64_t window = std::min(b, n);
  auto probs = StepAttentionProbs(step.queries.narrow(0, n - window, window), step.keys);
  const std::vector<float> stat = ToHost(probs.sum(1).mean(1));  // [kv_heads * n]

  const int64_t sinks = std::min(params_.sink_tokens, n);
  const int64_t recent = std::min(params_.recent_tokens, n - sinks);
  const int64_t span_end = n - recent;
  // Blocks align to the end of the tree span (item 17). The leading partial block is dropped in
  // every head: keeping it in some heads only would give heads different lengths.
  const int64_t blocks = (span_end - sinks) / b, first = span_end - blocks * b;
  const int64_t budget_blocks = params_.tree_tokens / b;
  std::vector<float> block_score(kv_heads * blocks, 0.0f);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t k = 0; k < blocks; ++k) {
      double sum = 0;
      for (int64_t j = first + k * b; j < first + (k + 1) * b; ++j) sum += stat[h * n + j];
      block_score[h * blocks + k] = static_cast<float>(sum / static_cast<double>(b));
    }
  }
  // Algorithm 1 over blocks with static scores; the last block (next to the recent window, the
  // observation window when R = 0) is always kept.
  std::vector<std::vector<int64_t>> kept_blocks(kv_heads);
  for (int64_t h = 0; h < kv_heads; ++h) {
    auto& list = kept_blocks[h];
    const float* bs = block_score.data() + h * blocks;
    int64_t pointer = 0;
    for (int64_t k = 0; k < blocks; ++k) {
      list.push_back(k);
      if (static_cast<int64_t>(list.size()) <= budget_blocks) continue;
      const int64_t l = list[pointer], r = list[pointer + 1];
      const bool evict_left = r == blocks - 1 || !(bs[l] > bs[r]);
      list.erase(list.begin() + pointer + (evict_left ? 0 : 1));
      pointer = (pointer + 1) % budget_blocks;
    }
  }

  const int64_t tree = static_cast<int64_t>(kept_blocks[0].size()) * b;
  const int64_t kept = sinks + tree + recent;
  std::vector<int64_t> order;
  order.reserve(kv_heads * kept);
  // Initial S_j: the token's own window score for sinks and recent, its block's score in the tree;
  // C_j = 1 (§2.4 [D]). Slots: sinks, the window (its ring not yet turned), the tree in order.
  std::vector<float> score(stat), count(kv_heads * n, 1.0f);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t s = 0; s < sinks; ++s) order.push_back(s);
    for (int64_t s = span_end; s < n; ++s) order.push_back(s);
    for (int64_t k : kept_blocks[h]) {
      for (int64_t j = first + k * b; j < first + (k + 1) * b; ++j) {
        order.push_back(j);
        score[h * n + j] = block_score[h * blocks + k];
      }
    }
  }
  structure.sinks = sinks;
  structure.tree = tree;
  structure.recent = recent;
  structure.pointer = 0;  // decode restarts with idx = 1 (1-based)
  structure.ring_head = params_.sink_tokens;
  structure.tree_slots.resize(tree);
  std::iota(structure.tree_slots.begin(), structure.tree_slots.end(),
            static_cast<int32_t>(sinks + recent));
  Keep(cache, step.layer, order, score, count);
}

void TreeKvPolicy::Keep(KvCache& cache, int64_t layer, const std::vector<int64_t>& kept,
                        const std::vector<float>& score, const std::vector<float>& count) {
  const int64_t length = cache.length(layer), kv_heads = cache.shape().num_kv_heads;
  const int64_t k = static_cast<int64_t>(kept.size()) / kv_heads;
  const auto options = at::TensorOptions().dtype(at::kFloat);
  auto kept_score = at::empty({kv_heads, k}, options),
       kept_count = at::empty({kv_heads, k}, options);
  float* s = kept_score.data_ptr<float>();
  float* c = kept_count.data_ptr<float>();
  for (int64_t i = 0; i < kv_heads * k; ++i) {
    const int64_t from = (i / k) * length + kept[i];
    s[i] = score[from];
    c[i] = count[from];
  }
  KeepSlots(cache, layer, kept, k);
  score_[layer].narrow(1, 0, k).copy_(kept_score);
  count_[layer].narrow(1, 0, k).copy_(kept_count);
  CountEviction(layer, length - k);
}

std::optional<BatchedDecodeStep> TreeKvPolicy::PlanBatchedDecode(const KvCache& cache) {
  EnsureStorage(cache);
  planned_ = layout_.Begin(0, cache.shape().num_layers, cache.tokens_seen());
  Insertion insertion = Insert(planned_, cache.length(0));
  BatchedDecodeStep step;
  step.rule = BatchedDecodeStep::Rule::kSlotChain;
  step.scores = score_;
  step.counts = count_;
  step.reduction = BatchedDecodeStep::GroupReduction::kSum;  // §0.5 item 14
  step.chain = std::move(insertion.chain);
  step.last_hop = insertion.last_hop;
  step.left = insertion.left;
  step.right = insertion.right;
  step.evict = !insertion.grows;
  return step;
}

void TreeKvPolicy::CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) {
  std::vector<int32_t> ranks = Ranks(planned_);
  layout_.FinishAll(cache.tokens_seen() + 1, std::move(planned_), std::move(ranks));
  CommitDecodeToken(cache, step.evict);
}

at::Tensor TreeKvPolicy::AveragedAttention(const KvCache& cache, int64_t layer) const {
  const int64_t length = cache.length(layer);
  if (!score_.defined()) return at::zeros({cache.shape().num_kv_heads, length});
  return (score_[layer].narrow(1, 0, length) / count_[layer].narrow(1, 0, length)).to(at::kCPU);
}

}  // namespace kvserve
