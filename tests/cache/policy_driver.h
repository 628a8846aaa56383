// Drives a CachePolicy the way LlamaModel::Attention does, without a model: append a step's keys
// and values to every layer, call Update with the step's queries, the held keys (RoPE left out: the
// policies only see rotated vectors) and the key mass, then Advance. Plus the §0.3 fixture.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cache/cache_policy.h"
#include "cache/kv_cache.h"
#include "cache/policy_tensors.h"

namespace kvserve::testing {

// §0.3: salience of tokens 0..19.
inline const std::vector<double> kSalience = {8.0, 1.1, 2.3, 1.2, 1.0, 6.1, 1.4, 0.9, 2.1, 7.2,
                                              1.3, 0.8, 1.5, 2.4, 5.3, 0.7, 1.6, 4.2, 1.9, 1.7};

inline KvCache MakeCache(int64_t kv_heads, int64_t head_dim, int64_t capacity, int64_t layers = 1) {
  return KvCache(KvCacheShape{layers, kv_heads, head_dim, at::kFloat, at::kCPU}, capacity);
}

// One step: keys/values [kv_heads, n, d], queries [n, heads, d]. `key_mass` [kv_heads, length]
// replaces the computed one when defined (tests that inject scores).
inline void RunStep(CachePolicy& policy, KvCache& cache, const at::Tensor& keys,
                    const at::Tensor& values, const at::Tensor& queries,
                    const at::Tensor& key_mass = at::Tensor()) {
  const int64_t n = keys.size(1);
  for (int64_t layer = 0; layer < cache.shape().num_layers; ++layer) {
    cache.Append(layer, keys, values);
    LayerStep step{layer, n, queries, cache.keys(layer), at::Tensor()};
    if (key_mass.defined()) {
      step.key_mass = key_mass;
    } else if (policy.wants_key_mass()) {
      step.key_mass = StepAttentionProbs(queries, step.keys).sum({1, 2});
    }
    policy.Update(cache, step);
  }
  cache.Advance(n);
}

// The §0.3 fixture as real vectors (1 KV head, 1 query head, d = 2): key p = [√2·ln w_p, p],
// query = [1, 0], so softmax(q·k/√2) over any key set is w_j / Σ w. Value p = [p, p].
inline void RunFixtureStep(CachePolicy& policy, KvCache& cache, int64_t first, int64_t n,
                           const at::Tensor& key_mass = at::Tensor()) {
  auto keys = at::zeros({1, n, 2}), values = at::zeros({1, n, 2});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = first + i;
    keys[0][i][0] = std::sqrt(2.0) * std::log(kSalience[p % kSalience.size()]);
    keys[0][i][1] = static_cast<double>(p);
    values[0][i].fill_(static_cast<double>(p));
  }
  auto queries = at::zeros({n, 1, 2});
  queries.select(2, 0).fill_(1.0);
  RunStep(policy, cache, keys, values, queries, key_mass);
}

// Original positions held by (layer, head), in slot order.
inline std::vector<int64_t> Held(const KvCache& cache, int64_t head = 0, int64_t layer = 0) {
  auto p = cache.positions(layer)[head].contiguous();
  return std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
}

// Random steps of the given sizes through `policy` (kv_heads 2, group 2, d 8, two layers), checked
// after every step against `check(cache)`; returns the keys and values appended, for FULL
// comparisons: [kv_heads, total, d] each.
template <typename Check>
std::pair<at::Tensor, at::Tensor> RunRandom(CachePolicy& policy, KvCache& cache,
                                            const std::vector<int64_t>& steps, Check check) {
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

}  // namespace kvserve::testing
