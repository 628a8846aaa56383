// Drives a CachePolicy the way LlamaModel::Attention does, without a model: append a step's keys
// and values to every layer, call Update with the step's queries, the held keys (RoPE left out: the
// policies only see rotated vectors) and the key mass, then Advance. Inputs: the §0.3 synthetic
// attention fixture of policies.md, a pre-drawn random stream, or tensors a test builds itself.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cache/cache_policy.h"
#include "cache/kv_cache.h"
#include "cache/policy_factory.h"
#include "cache/policy_tensors.h"

namespace kvserve::testing {

// policies.md §0.3: the salience of tokens 0..19.
inline const std::vector<double> kSalience = {8.0, 1.1, 2.3, 1.2, 1.0, 6.1, 1.4, 0.9, 2.1, 7.2,
                                              1.3, 0.8, 1.5, 2.4, 5.3, 0.7, 1.6, 4.2, 1.9, 1.7};

// One step's inputs for one layer: keys and values [kv_heads, n, dim], queries [n, heads, dim].
struct StepInput {
  at::Tensor keys, values, queries;
};

// The queries, keys and values of every token of a stream, for every layer: queries
// [layers, tokens, heads, dim], keys and values [layers, kv_heads, tokens, dim] (float32).
struct Stream {
  at::Tensor queries, keys, values;
  int64_t layers() const { return keys.size(0); }
  int64_t kv_heads() const { return keys.size(1); }
  int64_t tokens() const { return keys.size(2); }
  int64_t dim() const { return keys.size(3); }
  // Tokens [first, first + n) of `layer`.
  StepInput Step(int64_t layer, int64_t first, int64_t n) const {
    return {keys[layer].narrow(1, first, n), values[layer].narrow(1, first, n),
            queries[layer].narrow(0, first, n)};
  }
};

// The fixture as real vectors for tokens [first, first + n) (saliences repeat after token 19):
// key p = [ln w_p, p, 0...], query = [√dim, 0...], so the softmax of q·k/√dim over any key set is
// w_j / Σ w. Value p = p everywhere.
inline StepInput FixtureTokens(int64_t first, int64_t n, int64_t kv_heads = 1, int64_t group = 1,
                               int64_t dim = 4) {
  StepInput s;
  s.keys = at::zeros({kv_heads, n, dim});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = first + i;
    s.keys.select(1, i).select(-1, 0).fill_(std::log(kSalience[p % kSalience.size()]));
    s.keys.select(1, i).select(-1, 1).fill_(static_cast<double>(p));
  }
  s.values = at::arange(first, first + n, at::kFloat).view({1, n, 1}).expand({kv_heads, -1, dim});
  s.values = s.values.contiguous();
  s.queries = at::zeros({n, kv_heads * group, dim});
  s.queries.select(-1, 0).fill_(std::sqrt(static_cast<double>(dim)));
  return s;
}

// The 20 fixture tokens as a one-layer stream.
inline Stream FixtureStream(int64_t kv_heads = 1, int64_t group = 1, int64_t dim = 4) {
  StepInput s = FixtureTokens(0, static_cast<int64_t>(kSalience.size()), kv_heads, group, dim);
  return {s.queries.unsqueeze(0), s.keys.unsqueeze(0), s.values.unsqueeze(0)};
}

inline Stream RandomStream(int64_t layers, int64_t kv_heads, int64_t group, int64_t tokens,
                           int64_t dim, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  Stream s;
  s.queries = at::randn({layers, tokens, kv_heads * group, dim}, gen);
  s.keys = at::randn({layers, kv_heads, tokens, dim}, gen);
  s.values = at::randn({layers, kv_heads, tokens, dim}, gen);
  return s;
}

inline KvCache MakeCache(int64_t kv_heads, int64_t head_dim, int64_t capacity, int64_t layers = 1) {
  return KvCache(KvCacheShape{layers, kv_heads, head_dim, at::kFloat, at::kCPU}, capacity);
}

inline KvCache MakeCache(const Stream& stream, int64_t capacity) {
  return MakeCache(stream.kv_heads(), stream.dim(), capacity, stream.layers());
}

// Computes LayerStep::key_mass [kv_heads, length] for the step's n queries over the held keys.
using KeyMassFn =
    std::function<at::Tensor(const KvCache& cache, int64_t layer, const at::Tensor& queries)>;

// Key mass from real attention (what the reference backend returns): softmax(q·k/√d) with the
// causal mask, summed over the group's heads and the queries.
inline at::Tensor AttentionKeyMass(const KvCache& cache, int64_t layer, const at::Tensor& queries) {
  return StepAttentionProbs(queries, cache.keys(layer)).sum({1, 2});
}

// Key mass from the fixture's saliences (§0.3): each query attends the held keys plus the step's
// tokens up to itself, a_j = w_j / Σ w; one head per KV head, summed over the n queries.
inline at::Tensor FixtureKeyMass(const KvCache& cache, int64_t layer, const at::Tensor& queries) {
  const int64_t n = queries.size(0), length = cache.length(layer);
  auto positions = cache.positions(layer);
  auto mass = at::zeros({positions.size(0), length});
  for (int64_t h = 0; h < positions.size(0); ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t visible = length - n + i + 1;
      double total = 0;
      for (int64_t j = 0; j < visible; ++j) total += kSalience[positions[h][j].item<int64_t>()];
      for (int64_t j = 0; j < visible; ++j) {
        mass[h][j] += kSalience[positions[h][j].item<int64_t>()] / total;
      }
    }
  }
  return mass;
}

// Called with the cache and the step just before each Update (to look inside a step).
using StepProbe = std::function<void(const KvCache& cache, const LayerStep& step)>;

// One step through every layer, `input(layer)` giving that layer's tokens, then Advance.
inline void RunStep(CachePolicy& policy, KvCache& cache,
                    const std::function<StepInput(int64_t layer)>& input,
                    const KeyMassFn& key_mass = AttentionKeyMass, const StepProbe& probe = {}) {
  int64_t n = 0;
  for (int64_t layer = 0; layer < cache.shape().num_layers; ++layer) {
    StepInput in = input(layer);
    n = in.keys.size(1);
    cache.Append(layer, in.keys, in.values);
    LayerStep step{layer, n, in.queries, cache.keys(layer), at::Tensor()};
    if (policy.wants_key_mass()) step.key_mass = key_mass(cache, layer, step.queries);
    if (probe) probe(cache, step);
    policy.Update(cache, step);
  }
  cache.Advance(n);
}

// One step of the same tokens in every layer. `key_mass` [kv_heads, length] replaces the
// attention's when defined (tests that inject scores).
inline void RunStep(CachePolicy& policy, KvCache& cache, const at::Tensor& keys,
                    const at::Tensor& values, const at::Tensor& queries,
                    const at::Tensor& key_mass = at::Tensor()) {
  KeyMassFn mass = AttentionKeyMass;
  if (key_mass.defined())
    mass = [&](const KvCache&, int64_t, const at::Tensor&) { return key_mass; };
  RunStep(
      policy, cache,
      [&](int64_t) {
        return StepInput{keys, values, queries};
      },
      mass);
}

// Fixture tokens [first, first + n) in every layer, with the cache's KV heads and dim, one query
// head per KV head; `key_mass` as in RunStep.
inline void RunFixtureStep(CachePolicy& policy, KvCache& cache, int64_t first, int64_t n,
                           const at::Tensor& key_mass = at::Tensor()) {
  StepInput s = FixtureTokens(first, n, cache.shape().num_kv_heads, 1, cache.shape().head_dim);
  RunStep(policy, cache, s.keys, s.values, s.queries, key_mass);
}

// One step of tokens [tokens_seen, tokens_seen + n) of `stream` through every layer.
inline void FeedStep(CachePolicy& policy, KvCache& cache, const Stream& stream, int64_t n,
                     const KeyMassFn& key_mass, const StepProbe& probe = {}) {
  const int64_t first = cache.tokens_seen();
  RunStep(
      policy, cache, [&](int64_t layer) { return stream.Step(layer, first, n); }, key_mass, probe);
}

// Feeds `stream` up to `tokens` tokens in steps of `chunk`; `after` runs after every step.
// REQUIRES: the stream is at least `tokens` long.
inline void FeedChunks(CachePolicy& policy, KvCache& cache, const Stream& stream, int64_t tokens,
                       int64_t chunk, const KeyMassFn& key_mass,
                       const std::function<void()>& after = {}, const StepProbe& probe = {}) {
  while (cache.tokens_seen() < tokens) {
    FeedStep(policy, cache, stream, std::min(chunk, tokens - cache.tokens_seen()), key_mass, probe);
    if (after) after();
  }
}

// Random steps of the given sizes (the same tokens in every layer, two query heads per KV head,
// drawn from ATen's default generator), `check(cache)` after every step. Returns the keys and
// values appended, [kv_heads, total, dim] each, for FULL comparisons.
inline std::pair<at::Tensor, at::Tensor> RunRandom(
    CachePolicy& policy, KvCache& cache, const std::vector<int64_t>& steps,
    const std::function<void(const KvCache&)>& check) {
  const int64_t kv_heads = cache.shape().num_kv_heads, d = cache.shape().head_dim;
  std::vector<at::Tensor> all_keys, all_values;
  for (int64_t n : steps) {
    auto keys = at::randn({kv_heads, n, d}), values = at::randn({kv_heads, n, d});
    RunStep(policy, cache, keys, values, at::randn({n, 2 * kv_heads, d}));
    all_keys.push_back(keys);
    all_values.push_back(values);
    check(cache);
  }
  return {at::cat(all_keys, 1), at::cat(all_values, 1)};
}

// The original positions (layer, head) holds, in slot order: the rank order for IN-CACHE policies.
inline std::vector<int64_t> HeldInSlotOrder(const KvCache& cache, int64_t layer = 0,
                                            int64_t head = 0) {
  auto p = cache.positions(layer)[head].to(at::kCPU).contiguous();
  return std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
}

// The slots of `layer` in rank order under the policy's IN-CACHE layout (ring_layout).
inline std::vector<int64_t> SlotsInRankOrder(const CachePolicy& policy, const KvCache& cache,
                                             int64_t layer = 0) {
  auto ranks = SlotRanks(policy.ring_layout(layer), cache.length(layer), at::kCPU).contiguous();
  std::vector<int64_t> slots(ranks.numel());
  const int64_t* rank = ranks.data_ptr<int64_t>();
  for (int64_t s = 0; s < ranks.numel(); ++s) {
    EXPECT_TRUE(rank[s] >= 0 && rank[s] < ranks.numel()) << "slot " << s << " rank " << rank[s];
    if (rank[s] >= 0 && rank[s] < ranks.numel()) slots[rank[s]] = s;
  }
  return slots;
}

// The original positions (layer, head) holds, in rank order: the temporal order an IN-CACHE
// policy must keep (§0.2) whatever slots hold them.
inline std::vector<int64_t> HeldInRankOrder(const CachePolicy& policy, const KvCache& cache,
                                            int64_t layer = 0, int64_t head = 0) {
  const std::vector<int64_t> held = HeldInSlotOrder(cache, layer, head);
  std::vector<int64_t> out;
  for (int64_t s : SlotsInRankOrder(policy, cache, layer)) out.push_back(held[s]);
  return out;
}

// A slot-aligned [kv_heads, length] statistic of `layer`, its columns in rank order.
inline at::Tensor InRankOrder(const CachePolicy& policy, const KvCache& cache, int64_t layer,
                              const at::Tensor& stat) {
  return stat.index_select(1, at::tensor(SlotsInRankOrder(policy, cache, layer)));
}

// The original positions (layer, head) holds, sorted (§0.5 item 16: slot order is free for
// ORIGINAL-position policies).
inline std::vector<int64_t> HeldPositions(const KvCache& cache, int64_t layer = 0,
                                          int64_t head = 0) {
  std::vector<int64_t> held = HeldInSlotOrder(cache, layer, head);
  std::sort(held.begin(), held.end());
  return held;
}

// Every held slot's key and value are those of the token its position names.
inline void ExpectSlotsMatchStream(const KvCache& cache, const Stream& stream) {
  for (int64_t layer = 0; layer < stream.layers(); ++layer) {
    auto positions = cache.positions(layer);
    auto index = positions.unsqueeze(-1).expand({-1, -1, stream.dim()});
    EXPECT_TRUE(at::equal(cache.keys(layer), stream.keys[layer].gather(1, index)));
    EXPECT_TRUE(at::equal(cache.values(layer), stream.values[layer].gather(1, index)));
  }
}

inline CacheSpec Spec(CachePolicyKind kind, int64_t budget,
                      std::map<std::string, double> params = {}) {
  return {kind, budget, std::move(params)};
}

// MakeCachePolicy refuses `spec` with INVALID_ARGUMENT and a message that starts with `expected`:
// the field it names (not merely a prefix of a longer field name), optionally followed by the
// start of the explanation ("cache.h2o.heavy_tokens must be >= 1").
inline void ExpectRefused(const CacheSpec& spec, const std::string& expected,
                          PolicyContext context = {100, 10}) {
  auto policy = MakeCachePolicy(spec, context);
  ASSERT_FALSE(policy.ok()) << expected;
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << policy.status();
  const std::string message(policy.status().message());
  auto field_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  };
  const bool cut_inside_a_name = message.size() > expected.size() && field_char(expected.back()) &&
                                 field_char(message[expected.size()]);
  EXPECT_TRUE(message.rfind(expected, 0) == 0 && !cut_inside_a_name)
      << "\"" << message << "\" does not start with " << expected;
}

}  // namespace kvserve::testing
