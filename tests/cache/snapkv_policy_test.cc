// SnapKV (policies.md §4.3, §0.5 items 2, 9, 14, 15): worked example through real queries and
// keys, chunkings shorter than the window, ties, decode growth, validation, and a direct
// re-computation of the rule on random GQA inputs.
#include "cache/snapkv_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "cache/full_policy.h"
#include "tests/cache/policy_driver.h"

namespace kvserve {
namespace {

using testing::FeedChunks;
using testing::HeldPositions;
using testing::Spec;

SnapKvPolicy::Params Resolved(int64_t budget, std::map<std::string, double> params,
                              PolicyContext context) {
  auto resolved = SnapKvPolicy::Resolve(Spec(CachePolicyKind::kSnapKv, budget, params), context);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  return *resolved;
}

// The 20-token fixture as a prompt in steps of `chunk`; returns the held positions.
std::vector<int64_t> RunFixture(int64_t budget, int64_t window, int64_t kernel, int64_t pooling,
                                int64_t chunk) {
  SnapKvPolicy policy(Resolved(
      budget, {{"window_tokens", window}, {"kernel_size", kernel}, {"pooling", pooling}}, {20, 4}));
  auto stream = testing::FixtureStream();
  KvCache cache = testing::MakeCache(stream, policy.Capacity(chunk));
  FeedChunks(policy, cache, stream, 20, chunk, testing::AttentionKeyMass);
  EXPECT_EQ(cache.length(0), budget);
  EXPECT_EQ(policy.stats().peak_tokens, 20);
  EXPECT_EQ(policy.stats().evicted_tokens, 20 - budget);
  EXPECT_EQ(policy.stats().compression_events, 1);
  testing::ExpectSlotsMatchStream(cache, stream);
  return HeldPositions(cache, 0);
}

TEST(SnapKvPolicyTest, WorkedExample) {
  // B = 8, w = 4, k = 3, average pooling; chunks shorter than, equal to and longer than w.
  for (int64_t chunk : {1, 3, 4, 7, 20}) {
    EXPECT_EQ(RunFixture(8, 4, 3, 1, chunk), (std::vector<int64_t>{1, 8, 9, 10, 16, 17, 18, 19}))
        << "chunk " << chunk;
    EXPECT_EQ(RunFixture(8, 4, 1, 0, chunk), (std::vector<int64_t>{0, 5, 9, 14, 16, 17, 18, 19}))
        << "chunk " << chunk;
  }
}

TEST(SnapKvPolicyTest, MaxPooling) {
  // From Appendix A's simulator with max pooling (margin 0.11).
  EXPECT_EQ(RunFixture(10, 5, 3, 2, 20),
            (std::vector<int64_t>{0, 1, 8, 9, 10, 15, 16, 17, 18, 19}));
  // Max pooling copies values, so neighbours tie exactly: 0 and 1 both carry token 0's mass and
  // 8 and 9 token 9's; the ties resolve by position.
  EXPECT_EQ(RunFixture(8, 4, 3, 2, 3), (std::vector<int64_t>{0, 1, 8, 9, 16, 17, 18, 19}));
}

// Zero queries attend uniformly, so every prefix key gets the same window mass (§0.5 item 2).
TEST(SnapKvPolicyTest, TiesKeepTheOlderToken) {
  for (int64_t kernel : {1, 3}) {
    auto stream = testing::RandomStream(1, 2, 2, 12, 4, 3);
    stream.queries.zero_();
    SnapKvPolicy policy(Resolved(6, {{"window_tokens", 2}, {"kernel_size", kernel}}, {12, 1}));
    KvCache cache = testing::MakeCache(stream, policy.Capacity(5));
    FeedChunks(policy, cache, stream, 12, 5, testing::AttentionKeyMass);
    // kernel 1: the four oldest; kernel 3: zero padding lowers both ends of the prefix.
    const auto expected = kernel == 1 ? std::vector<int64_t>{0, 1, 2, 3, 10, 11}
                                      : std::vector<int64_t>{1, 2, 3, 4, 10, 11};
    EXPECT_EQ(HeldPositions(cache, 0, 0), expected) << "kernel " << kernel;
    EXPECT_EQ(HeldPositions(cache, 0, 1), expected) << "kernel " << kernel;
  }
}

TEST(SnapKvPolicyTest, GrowsDuringDecodeAndReservesThePrompt) {
  const int64_t prompt = 24, decode = 6;
  auto stream = testing::RandomStream(2, 2, 2, prompt + decode, 8, 9);
  SnapKvPolicy policy(Resolved(10, {}, {prompt, decode}));
  EXPECT_EQ(policy.params().window_tokens, 5);
  EXPECT_EQ(policy.Capacity(8), 24);  // max(prompt, budget + max_new_tokens)
  KvCache cache = testing::MakeCache(stream, policy.Capacity(8));
  FeedChunks(policy, cache, stream, prompt, 8, testing::AttentionKeyMass);
  EXPECT_EQ(cache.length(1), 10);
  auto compressed = HeldPositions(cache, 1, 1);
  FeedChunks(policy, cache, stream, prompt + decode, 1, testing::AttentionKeyMass);
  EXPECT_EQ(cache.length(1), 10 + decode);
  for (int64_t p = prompt; p < prompt + decode; ++p) compressed.push_back(p);
  EXPECT_EQ(HeldPositions(cache, 1, 1), compressed);
  EXPECT_EQ(policy.stats().compression_events, 1);
  EXPECT_EQ(policy.stats().evicted_tokens, prompt - 10);
  EXPECT_EQ(policy.stats().peak_tokens, prompt);  // §0.5 item 9: the peak is the prompt
  EXPECT_EQ(SnapKvPolicy(Resolved(10, {}, {5, 100})).Capacity(8), 110);
}

// On CUDA one-token steps go to the decode runner, which applies a planned step instead of Update:
// a prompt token must not be planned as a decode step, or the prompt is never compressed.
TEST(SnapKvPolicyTest, OneTokenPromptStepsAreNotPlannedAsDecode) {
  const int64_t prompt = 24;
  auto stream = testing::RandomStream(2, 2, 2, prompt + 2, 8, 9);
  SnapKvPolicy policy(Resolved(10, {}, {prompt, 2}));
  KvCache cache = testing::MakeCache(stream, policy.Capacity(8));
  FeedChunks(policy, cache, stream, prompt - 1, 8, testing::AttentionKeyMass);
  EXPECT_FALSE(policy.PlanBatchedDecode(cache).has_value());  // the prompt's last token
  FeedChunks(policy, cache, stream, prompt, 1, testing::AttentionKeyMass);
  EXPECT_EQ(cache.length(1), 10);
  const auto plan = policy.PlanBatchedDecode(cache);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->rule, BatchedDecodeStep::Rule::kAppendOnly);
  // A prompt within the budget is never compressed: every one-token step only appends.
  SnapKvPolicy small(Resolved(10, {}, {5, 2}));
  EXPECT_TRUE(small.PlanBatchedDecode(testing::MakeCache(stream, small.Capacity(1))).has_value());
}

// The rule recomputed from the stream directly, per KV head, in double precision.
std::vector<int64_t> Recompute(const testing::Stream& s, int64_t layer, int64_t head, int64_t n,
                               const SnapKvPolicy::Params& p) {
  const int64_t w = p.window_tokens, prefix = n - w, k = p.kernel_size, dim = s.dim();
  const int64_t group = s.queries.size(2) / s.kv_heads();
  auto q = s.queries[layer].to(at::kDouble), keys = s.keys[layer][head].to(at::kDouble);
  std::vector<double> mass(prefix, 0.0);
  for (int64_t i = prefix; i < n; ++i) {
    for (int64_t g = 0; g < group; ++g) {
      auto logits = at::mv(keys.narrow(0, 0, i + 1), q[i][head * group + g]) / std::sqrt(dim);
      auto probs = at::softmax(logits, 0);
      for (int64_t j = 0; j < prefix; ++j) mass[j] += probs[j].item<double>() / group;
    }
  }
  std::vector<double> pooled(prefix);
  for (int64_t j = 0; j < prefix; ++j) {
    double sum = 0, max = 0;
    for (int64_t t = std::max<int64_t>(0, j - k / 2); t <= std::min(prefix - 1, j + k / 2); ++t) {
      sum += mass[t];
      max = std::max(max, mass[t]);
    }
    pooled[j] = p.pooling == SnapKvPolicy::Pooling::kMax ? max : sum / k;
  }
  std::vector<int64_t> order(prefix);
  for (int64_t j = 0; j < prefix; ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return pooled[a] > pooled[b]; });
  order.resize(p.budget_tokens - w);
  std::sort(order.begin(), order.end());
  for (int64_t j = prefix; j < n; ++j) order.push_back(j);
  return order;
}

TEST(SnapKvPolicyTest, MatchesADirectRecomputationOnRandomGqaInputs) {
  const int64_t prompt = 37, layers = 2, kv_heads = 2;
  for (int64_t pooling : {1, 2}) {
    for (int64_t chunk : {1, 3, 8, 37}) {
      auto stream = testing::RandomStream(layers, kv_heads, 3, prompt, 8, 21 + chunk);
      auto params = Resolved(12, {{"window_tokens", 5}, {"pooling", pooling}}, {prompt, 3});
      SnapKvPolicy policy(params);
      KvCache cache = testing::MakeCache(stream, policy.Capacity(chunk));
      FeedChunks(policy, cache, stream, prompt, chunk, testing::AttentionKeyMass, [&] {
        const int64_t expected = cache.tokens_seen() < prompt ? cache.tokens_seen() : 12;
        ASSERT_EQ(cache.length(layers - 1), expected);
      });
      for (int64_t layer = 0; layer < layers; ++layer) {
        for (int64_t h = 0; h < kv_heads; ++h) {
          EXPECT_EQ(HeldPositions(cache, layer, h), Recompute(stream, layer, h, prompt, params))
              << "pooling " << pooling << " chunk " << chunk << " layer " << layer << " head " << h;
        }
      }
      testing::ExpectSlotsMatchStream(cache, stream);
    }
  }
}

TEST(SnapKvPolicyTest, SameAsFullWhenThePromptFitsTheBudget) {
  const int64_t tokens = 30;
  auto stream = testing::RandomStream(2, 2, 2, tokens, 8, 5);
  SnapKvPolicy policy(Resolved(20, {}, {20, 10}));
  FullPolicy full(tokens);
  KvCache cache = testing::MakeCache(stream, policy.Capacity(4));
  KvCache full_cache = testing::MakeCache(stream, full.Capacity(4));
  FeedChunks(policy, cache, stream, 20, 4, testing::AttentionKeyMass);
  FeedChunks(policy, cache, stream, tokens, 1, testing::AttentionKeyMass);
  FeedChunks(full, full_cache, stream, tokens, 4, testing::AttentionKeyMass);
  for (int64_t layer = 0; layer < 2; ++layer) {
    EXPECT_TRUE(at::equal(cache.keys(layer), full_cache.keys(layer)));
    EXPECT_TRUE(at::equal(cache.values(layer), full_cache.values(layer)));
    EXPECT_TRUE(at::equal(cache.positions(layer), full_cache.positions(layer)));
  }
  EXPECT_EQ(policy.stats().compression_events, 0);
}

TEST(SnapKvPolicyTest, DefaultsFollowTheBudget) {
  EXPECT_EQ(Resolved(32, {}, {}).window_tokens, 16);
  EXPECT_EQ(Resolved(100, {}, {}).window_tokens, 32);
  EXPECT_EQ(Resolved(3, {}, {}).window_tokens, 1);
  EXPECT_EQ(Resolved(32, {}, {}).kernel_size, 5);
  EXPECT_EQ(Resolved(32, {}, {}).pooling, SnapKvPolicy::Pooling::kAverage);
  EXPECT_EQ(Resolved(32, {{"pooling", 0}}, {}).pooling, SnapKvPolicy::Pooling::kAverage);
}

TEST(SnapKvPolicyTest, RefusesBadSpecsNamingTheField) {
  using testing::ExpectRefused;
  const auto kind = CachePolicyKind::kSnapKv;
  ExpectRefused(Spec(kind, 1), "cache.budget_tokens");
  ExpectRefused(Spec(kind, 8, {{"window_tokens", 8}}), "cache.snapkv.window_tokens");
  ExpectRefused(Spec(kind, 8, {{"window_tokens", 0}}), "cache.snapkv.window_tokens");
  ExpectRefused(Spec(kind, 8, {{"kernel_size", 4}}), "cache.snapkv.kernel_size");
  ExpectRefused(Spec(kind, 8, {{"kernel_size", 0}}), "cache.snapkv.kernel_size");
  ExpectRefused(Spec(kind, 8, {{"kernel_size", 3.0001}}), "cache.snapkv.kernel_size");
  ExpectRefused(Spec(kind, 8, {{"pooling", 3}}), "cache.snapkv.pooling");
  ExpectRefused(Spec(kind, 8, {{"pooling", -1}}), "cache.snapkv.pooling");
  ExpectRefused(Spec(kind, 8, {{"kernel", 3}, {"bogus", 1}}), "cache.snapkv.bogus");
}

TEST(SnapKvPolicyTest, FactoryDescribesTheServedPolicies) {
  int served = 0;
  for (const auto& d : DescribeCachePolicies()) {
    if (d.kind == CachePolicyKind::kSnapKv) {
      EXPECT_TRUE(d.served);
      EXPECT_EQ(d.parameters.size(), 3u);
    }
    served += d.served;
  }
  EXPECT_EQ(served, 7);  // FULL and the six compressed policies
}

}  // namespace
}  // namespace kvserve
