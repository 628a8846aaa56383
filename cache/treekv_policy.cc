#include "cache/treekv_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <deque>

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

void TreeKvPolicy::Update(KvCache& cache, const LayerStep& step) {
  if (static_cast<int64_t>(layers_.size()) < cache.shape().num_layers) {
    layers_.resize(cache.shape().num_layers);
  }
  LayerState& state = layers_[step.layer];
  const int64_t length = cache.length(step.layer), held = length - step.new_tokens;
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  TORCH_CHECK(held == state.sinks + state.tree + state.recent, "TreeKvPolicy: layer ", step.layer,
              " holds ", held, " tokens, the policy expected ",
              state.sinks + state.tree + state.recent);
  const bool whole_prompt =
      held == 0 && (params_.prompt_tokens == 0 || step.new_tokens == params_.prompt_tokens);
  if (whole_prompt && length > params_.budget() && params_.tree_tokens >= params_.prefill_block) {
    UpdatePrompt(cache, step, state);
  } else {
    UpdateTokens(cache, step, state);
  }
}

void TreeKvPolicy::UpdateTokens(KvCache& cache, const LayerStep& step, LayerState& state) {
  TORCH_CHECK(step.key_mass.defined(), "TreeKvPolicy needs LayerStep::key_mass");
  const int64_t length = cache.length(step.layer), n = step.new_tokens, held = length - n;
  const int64_t kv_heads = cache.shape().num_kv_heads;
  std::vector<float> score = ToHost(step.key_mass);  // [kv_heads * length]
  std::vector<float> count(kv_heads * length);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t j = 0; j < length; ++j) {
      const int64_t at = h * length + j;
      // Query i of the step sits at slot held + i and sees slots <= held + i.
      count[at] = static_cast<float>(j < held ? n : n - (j - held));
      if (j < held) {
        score[at] += state.score[h * held + j];
        count[at] += state.count[h * held + j];
      }
    }
  }
  auto averaged = [&](int64_t h, int64_t slot) {
    const int64_t at = h * length + slot;
    return static_cast<double>(score[at]) / static_cast<double>(count[at]);
  };

  // Sinks and the recent window hold the same slots in every head; only the tree differs.
  std::deque<int64_t> recent;
  for (int64_t s = state.sinks + state.tree; s < held; ++s) recent.push_back(s);
  std::vector<std::vector<int64_t>> tree(kv_heads);
  for (auto& t : tree) {
    for (int64_t s = state.sinks; s < state.sinks + state.tree; ++s) t.push_back(s);
  }
  for (int64_t slot = held; slot < length; ++slot) {
    if (state.sinks < params_.sink_tokens) {
      ++state.sinks;  // the stream's first tokens: slot == state.sinks before the increment
      continue;
    }
    recent.push_back(slot);
    if (static_cast<int64_t>(recent.size()) <= params_.recent_tokens) continue;
    for (auto& t : tree) t.push_back(recent.front());
    recent.pop_front();
    if (++state.tree <= params_.tree_tokens) continue;
    // Algorithm 1: scope {idx, idx + 1}; the left token survives only if strictly better.
    const int64_t idx = state.pointer;
    for (int64_t h = 0; h < kv_heads; ++h) {
      auto& t = tree[h];
      const bool keep_left = averaged(h, t[idx]) > averaged(h, t[idx + 1]);
      t.erase(t.begin() + idx + (keep_left ? 1 : 0));
    }
    --state.tree;
    state.pointer = (state.pointer + 1) % params_.tree_tokens;
  }
  state.recent = static_cast<int64_t>(recent.size());

  const int64_t kept = state.sinks + state.tree + state.recent;
  std::vector<int64_t> order;
  order.reserve(kv_heads * kept);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t s = 0; s < state.sinks; ++s) order.push_back(s);
    order.insert(order.end(), tree[h].begin(), tree[h].end());
    order.insert(order.end(), recent.begin(), recent.end());
  }
  Keep(cache, step.layer, state, order, score, count);
}

void TreeKvPolicy::UpdatePrompt(KvCache& cache, const LayerStep& step, LayerState& state) {
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
  // C_j = 1 (§2.4 [D]).
  std::vector<float> score(stat), count(kv_heads * n, 1.0f);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t s = 0; s < sinks; ++s) order.push_back(s);
    for (int64_t k : kept_blocks[h]) {
      for (int64_t j = first + k * b; j < first + (k + 1) * b; ++j) {
        order.push_back(j);
        score[h * n + j] = block_score[h * blocks + k];
      }
    }
    for (int64_t s = span_end; s < n; ++s) order.push_back(s);
  }
  state.sinks = sinks;
  state.tree = tree;
  state.recent = recent;
  state.pointer = 0;  // decode restarts with idx = 1 (1-based)
  Keep(cache, step.layer, state, order, score, count);
}

void TreeKvPolicy::Keep(KvCache& cache, int64_t layer, LayerState& state,
                        const std::vector<int64_t>& kept, const std::vector<float>& score,
                        const std::vector<float>& count) {
  const int64_t length = cache.length(layer), kv_heads = cache.shape().num_kv_heads;
  const int64_t k = static_cast<int64_t>(kept.size()) / kv_heads;
  state.score.resize(kv_heads * k);
  state.count.resize(kv_heads * k);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t r = 0; r < k; ++r) {
      state.score[h * k + r] = score[h * length + kept[h * k + r]];
      state.count[h * k + r] = count[h * length + kept[h * k + r]];
    }
  }
  KeepSlots(cache, layer, kept, k);
  CountEviction(layer, length - k);
}

at::Tensor TreeKvPolicy::AveragedAttention(int64_t layer) const {
  const LayerState& state = layers_.at(layer);
  const int64_t length = state.sinks + state.tree + state.recent;
  const int64_t kv_heads = length == 0 ? 0 : static_cast<int64_t>(state.score.size()) / length;
  auto out = at::empty({kv_heads, length}, at::TensorOptions().dtype(at::kFloat));
  float* data = out.data_ptr<float>();
  for (size_t i = 0; i < state.score.size(); ++i) data[i] = state.score[i] / state.count[i];
  return out;
}

}  // namespace kvserve
