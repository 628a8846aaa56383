// Drives a CachePolicy the way LlamaModel::Attention does (append, attend, Update, Advance) without
// a model: the §0.3 synthetic attention fixture of policies.md, or random queries/keys/values.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cache/cache_policy.h"
#include "cache/kv_cache.h"
#include "cache/policy_factory.h"

namespace kvserve::testing {

// policies.md §0.3: the salience of tokens 0..19.
inline const std::vector<double> kSalience = {8.0, 1.1, 2.3, 1.2, 1.0, 6.1, 1.4, 0.9, 2.1, 7.2,
                                              1.3, 0.8, 1.5, 2.4, 5.3, 0.7, 1.6, 4.2, 1.9, 1.7};

// The queries, keys and values of every token of a stream, for every layer: queries
// [layers, tokens, heads, dim], keys and values [layers, kv_heads, tokens, dim] (float32).
struct Stream {
  at::Tensor queries, keys, values;
  int64_t layers() const { return keys.size(0); }
  int64_t kv_heads() const { return keys.size(1); }
  int64_t tokens() const { return keys.size(2); }
  int64_t dim() const { return keys.size(3); }
};

// The fixture as real vectors: key p = [log w_p, p, 0...], query = [sqrt(dim), 0...], so the
// softmax of q.k/sqrt(dim) over any key set is w_j / Σ w. Value p = p everywhere.
inline Stream FixtureStream(int64_t kv_heads = 1, int64_t group = 1, int64_t dim = 4) {
  const int64_t tokens = static_cast<int64_t>(kSalience.size());
  Stream s;
  s.keys = at::zeros({1, kv_heads, tokens, dim});
  for (int64_t p = 0; p < tokens; ++p) {
    s.keys.select(2, p).select(-1, 0).fill_(std::log(kSalience[p]));
    s.keys.select(2, p).select(-1, 1).fill_(static_cast<double>(p));
  }
  s.values = at::arange(tokens, at::kFloat).view({1, 1, tokens, 1}).expand({1, kv_heads, -1, dim});
  s.values = s.values.contiguous();
  s.queries = at::zeros({1, tokens, kv_heads * group, dim});
  s.queries.select(-1, 0).fill_(std::sqrt(static_cast<double>(dim)));
  return s;
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

// Computes LayerStep::key_mass [kv_heads, length] for the step's n queries over the held keys.
using KeyMassFn =
    std::function<at::Tensor(const KvCache& cache, int64_t layer, const at::Tensor& queries)>;

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

// Key mass from real attention (what the reference backend returns): softmax(q.k/sqrt(d)) with the
// causal mask, summed over the group's heads and the queries.
inline at::Tensor AttentionKeyMass(const KvCache& cache, int64_t layer, const at::Tensor& queries) {
  auto keys = cache.keys(layer);
  const int64_t n = queries.size(0), heads = queries.size(1), dim = queries.size(2);
  const int64_t kv_heads = keys.size(0), m = keys.size(1);
  auto q = queries.view({n, kv_heads, heads / kv_heads, dim}).permute({1, 2, 0, 3});
  auto scores = at::matmul(q, keys.unsqueeze(1).transpose(-1, -2)) / std::sqrt(double(dim));
  auto mask = at::arange(m).unsqueeze(0) > at::arange(m - n, m).unsqueeze(1);
  return at::softmax(scores.masked_fill(mask, -INFINITY), -1).sum({1, 2});
}

// Called with the cache and the step just before each Update (to look inside a step).
using StepProbe = std::function<void(const KvCache& cache, const LayerStep& step)>;

// One step of tokens [first, first + n) of `stream` through every layer, then Advance.
inline void FeedStep(CachePolicy& policy, KvCache& cache, const Stream& stream, int64_t n,
                     const KeyMassFn& key_mass, const StepProbe& probe = {}) {
  const int64_t first = cache.tokens_seen();
  for (int64_t layer = 0; layer < stream.layers(); ++layer) {
    cache.Append(layer, stream.keys[layer].narrow(1, first, n),
                 stream.values[layer].narrow(1, first, n));
    LayerStep step{layer, n, stream.queries[layer].narrow(0, first, n), cache.keys(layer), {}};
    if (policy.wants_key_mass()) step.key_mass = key_mass(cache, layer, step.queries);
    if (probe) probe(cache, step);
    policy.Update(cache, step);
  }
  cache.Advance(n);
}

// Feeds `tokens` tokens of `stream` in steps of `chunk`; `after` runs after every step.
// REQUIRES: the stream is at least `tokens` long.
inline void FeedChunks(CachePolicy& policy, KvCache& cache, const Stream& stream, int64_t tokens,
                       int64_t chunk, const KeyMassFn& key_mass,
                       const std::function<void()>& after = {}, const StepProbe& probe = {}) {
  while (cache.tokens_seen() < tokens) {
    FeedStep(policy, cache, stream, std::min(chunk, tokens - cache.tokens_seen()), key_mass, probe);
    if (after) after();
  }
}

inline KvCache MakeCache(const Stream& stream, int64_t capacity) {
  return KvCache({stream.layers(), stream.kv_heads(), stream.dim(), at::kFloat, at::kCPU},
                 capacity);
}

// The original positions `head` of `layer` holds, sorted (§0.5 item 16).
inline std::vector<int64_t> HeldPositions(const KvCache& cache, int64_t layer, int64_t head = 0) {
  auto positions = std::get<0>(at::sort(cache.positions(layer)[head])).contiguous();
  return {positions.data_ptr<int64_t>(), positions.data_ptr<int64_t>() + positions.numel()};
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

// MakeCachePolicy refuses `spec` with INVALID_ARGUMENT and a message that names `field`.
inline void ExpectRefused(const CacheSpec& spec, const std::string& field,
                          PolicyContext context = {100, 10}) {
  auto policy = MakeCachePolicy(spec, context);
  ASSERT_FALSE(policy.ok()) << field;
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(policy.status().message().find(field), std::string::npos)
      << "\"" << policy.status().message() << "\" does not name " << field;
}

}  // namespace kvserve::testing
