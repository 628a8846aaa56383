// CASCADING: the worked examples of policies.md §1.12 (tests A–D, §0.5 item 12), validation and
// invariants on random inputs.
#include "cache/cascading_policy.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/cache/policy_driver.h"

namespace kvserve {
namespace {

using testing::ExpectRefused;
using testing::HeldInRankOrder;
using testing::InRankOrder;
using testing::kSalience;
using testing::MakeCache;
using testing::RunFixtureStep;
using testing::RunRandom;
using testing::RunStep;
using testing::Spec;

CascadingParams Params(int64_t sinks, int64_t cascades, int64_t width, double beta) {
  CascadingParams p;
  p.sink_tokens = sinks;
  p.num_cascades = cascades;
  p.cascade_tokens = width;
  p.ema_decay = beta;
  return p;
}

// Test A (frozen scores): with β = 1 and each query attending only the sinks and itself
// (every other key at logit −100), a token's score is w_p / (w_p + 2) for life, which orders tokens
// exactly as the frozen w_p do. Checks the §1.12 trace step by step.
TEST(CascadingPolicyTest, FrozenScoresFollowTheTrace) {
  CascadingPolicy policy(Params(2, 3, 2, 1.0));
  const int64_t d = 20;
  KvCache cache = MakeCache(1, d, policy.Capacity(1));
  const std::vector<std::vector<int64_t>> trace = {{0},
                                                   {0, 1},
                                                   {0, 1, 2},
                                                   {0, 1, 2, 3},
                                                   {0, 1, 2, 3, 4},
                                                   {0, 1, 2, 3, 4, 5},
                                                   {0, 1, 2, 3, 4, 5, 6},
                                                   {0, 1, 2, 3, 4, 5, 6, 7},
                                                   {0, 1, 2, 3, 5, 6, 7, 8},
                                                   {0, 1, 2, 3, 5, 6, 8, 9},
                                                   {0, 1, 3, 5, 6, 8, 9, 10},
                                                   {0, 1, 3, 5, 6, 9, 10, 11},
                                                   {0, 1, 3, 5, 9, 10, 11, 12},
                                                   {0, 1, 3, 5, 9, 10, 12, 13},
                                                   {0, 1, 5, 9, 10, 12, 13, 14},
                                                   {0, 1, 5, 9, 10, 13, 14, 15},
                                                   {0, 1, 5, 9, 13, 14, 15, 16},
                                                   {0, 1, 5, 9, 13, 14, 16, 17},
                                                   {0, 1, 9, 13, 14, 16, 17, 18},
                                                   {0, 1, 9, 13, 14, 17, 18, 19}};
  for (int64_t p = 0; p < 20; ++p) {
    auto key = at::zeros({1, 1, d});
    auto query = at::full({1, 1, d}, -100.0);
    query[0][0][0] = query[0][0][1] = 0.0;  // dimensions 0 and 1 are never set in a key
    if (p >= 2) {
      key[0][0][p] = 1.0;
      query[0][0][p] = std::log(kSalience[p]);
    }
    RunStep(policy, cache, key, key.clone(), query * std::sqrt(static_cast<double>(d)));
    EXPECT_EQ(HeldInRankOrder(policy, cache), trace[p]) << "after token " << p;
  }
  EXPECT_EQ(policy.stats().peak_tokens, 9);
  EXPECT_EQ(policy.stats().evicted_tokens, 12);
  // The slots are the §1.12 physical buffers (c0 [18, 19] start 0, c1 [14, 17] start 0, c2 [13, 9]
  // start 1) and their RoPE positions c0 [6, 7], c1 [4, 5], c2 [3, 2].
  EXPECT_EQ(testing::HeldInSlotOrder(cache), (std::vector<int64_t>{0, 1, 18, 19, 14, 17, 13, 9}));
  const RingLayout layout = policy.ring_layout(0);
  EXPECT_EQ(std::vector<int32_t>(layout.ranks.begin(), layout.ranks.end()),
            (std::vector<int32_t>{0, 1, 6, 7, 4, 5, 3, 2}));
}

// The EMA scores of layer 0 in rank order.
at::Tensor RankedScores(const CascadingPolicy& policy, const KvCache& cache) {
  return InRankOrder(policy, cache, 0, policy.Scores(cache, 0));
}

void ExpectScores(const CascadingPolicy& policy, const KvCache& cache) {
  const std::vector<int64_t> held = HeldInRankOrder(policy, cache);
  ASSERT_EQ(held, (std::vector<int64_t>{0, 1, 9, 13, 14, 17, 18, 19}));
  auto scores = RankedScores(policy, cache);
  const std::vector<double> expected = {0.14969, 0.03655, 0.07121, 0.03187, 0.01021, 0.00509};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(scores[0][2 + i].item<float>(), expected[i], 6e-6);
}

// Test B: real EMA, decode path, β = 0.9, §0.3 attention.
TEST(CascadingPolicyTest, EmaScoresDecode) {
  CascadingPolicy policy(Params(2, 3, 2, 0.9));
  KvCache cache = MakeCache(1, 2, policy.Capacity(1));
  for (int64_t p = 0; p < 20; ++p) RunFixtureStep(policy, cache, p, 1);
  ExpectScores(policy, cache);
  // IN-CACHE: the next query's rank is the cache length.
  EXPECT_EQ(cache.length(0), 8);
}

// Test C: strided prefill, chunks of 4 (§0.5 items 11, 12).
TEST(CascadingPolicyTest, EmaScoresChunksOfFour) {
  CascadingPolicy policy(Params(2, 3, 2, 0.9));
  KvCache cache = MakeCache(1, 2, policy.Capacity(4));
  for (int64_t p = 0; p < 20; p += 4) RunFixtureStep(policy, cache, p, 4);
  ASSERT_EQ(HeldInRankOrder(policy, cache), (std::vector<int64_t>{0, 1, 9, 13, 14, 17, 18, 19}));
  auto scores = RankedScores(policy, cache);
  const std::vector<double> expected = {0.13931, 0.03381, 0.06557, 0.02859, 0.00887, 0.00410};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(scores[0][2 + i].item<float>(), expected[i], 6e-6);
}

// Keys for the EMA arithmetic tests: token 0 a sink, token 1 the watched key, later tokens filler.
// Query logits: `logit` on key 1, 0 on every other key.
at::Tensor Query(int64_t heads, const std::vector<double>& logits) {
  auto q = at::zeros({1, heads, 2});
  for (int64_t h = 0; h < heads; ++h) q[0][h][0] = logits[h] * std::sqrt(2.0);
  return q;
}
at::Tensor Key(int64_t p) { return at::tensor({p == 1 ? 1.0 : 0.0, 0.0}).view({1, 1, 2}); }

// Attention a on key 1 from a query that sees `others` other keys at logit 0.
double Logit(double a, int64_t others) { return std::log(a * others / (1.0 - a)); }

// Test D: a chunk of 3 queries giving 0.2, 0.1, 0.4 to a cached key equals three decode steps:
// β³·s0 + (1 − β)(β²·0.2 + β·0.1 + 0.4), with s0 = 0.1·0.5 from the first step.
TEST(CascadingPolicyTest, ChunkEmaEqualsSequentialUpdates) {
  const double expected = 0.729 * 0.05 + 0.1 * (0.81 * 0.2 + 0.9 * 0.1 + 0.4);
  for (int64_t chunk : {1, 3}) {
    CascadingPolicy policy(Params(1, 1, 8, 0.9));
    KvCache cache = MakeCache(1, 2, policy.Capacity(3));
    auto two = at::cat({Key(0), Key(1)}, 1);
    RunStep(policy, cache, two, two, at::cat({Query(1, {0.0}), Query(1, {Logit(0.5, 1)})}, 0));
    std::vector<at::Tensor> queries;
    const std::vector<double> attention = {0.2, 0.1, 0.4};
    for (int64_t i = 0; i < 3; ++i) queries.push_back(Query(1, {Logit(attention[i], 2 + i)}));
    for (int64_t i = 0; i < 3; i += chunk) {
      auto keys = at::cat(std::vector<at::Tensor>(chunk, Key(2)), 1);
      RunStep(
          policy, cache, keys, keys,
          at::cat(std::vector<at::Tensor>(queries.begin() + i, queries.begin() + i + chunk), 0));
    }
    EXPECT_NEAR(RankedScores(policy, cache)[0][1].item<float>(), expected, 1e-6)
        << "chunk " << chunk;
  }
}

// §0.5 item 12: two query heads of one KV head give (0.4, 0) and (0, 0.4); under max the score is
// 0.04 as one chunk of 2 and 0.076 as two decode steps.
TEST(CascadingPolicyTest, GroupMaxDependsOnChunking) {
  for (int64_t chunk : {1, 2}) {
    CascadingPolicy policy(Params(1, 1, 8, 0.9));
    KvCache cache = MakeCache(1, 2, policy.Capacity(2));
    auto two = at::cat({Key(0), Key(1)}, 1);
    RunStep(policy, cache, two, two, at::cat({Query(2, {0, 0}), Query(2, {-100, -100})}, 0));
    // The first query of the pair sees 2 other keys, the second 3.
    std::vector<at::Tensor> queries = {Query(2, {Logit(0.4, 2), -100}),
                                       Query(2, {-100, Logit(0.4, 3)})};
    for (int64_t i = 0; i < 2; i += chunk) {
      auto keys = at::cat(std::vector<at::Tensor>(chunk, Key(2)), 1);
      RunStep(
          policy, cache, keys, keys,
          at::cat(std::vector<at::Tensor>(queries.begin() + i, queries.begin() + i + chunk), 0));
    }
    EXPECT_NEAR(RankedScores(policy, cache)[0][1].item<float>(), chunk == 1 ? 0.076 : 0.04, 1e-6);
  }
}

TEST(CascadingPolicyTest, DefaultsFollowTheBudget) {
  auto p = CascadingPolicy::Resolve({CachePolicyKind::kCascading, 32, {}}, {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->sink_tokens, 4);
  EXPECT_EQ(p->cascade_tokens, 7);
  EXPECT_EQ(p->num_cascades, 4);
  p = CascadingPolicy::Resolve({CachePolicyKind::kCascading, 2050, {}}, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->sink_tokens, 66);  // 64 + (1986 mod 4)
  EXPECT_EQ(p->cascade_tokens, 496);
  p = CascadingPolicy::Resolve({CachePolicyKind::kCascading, 8, {{"num_cascades", 3}}}, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->sink_tokens, 5);  // 4 + ((8 − 4) mod 3)
  EXPECT_EQ(p->cascade_tokens, 1);
  p = CascadingPolicy::Resolve({CachePolicyKind::kCascading, 32, {{"cascade_tokens", 6}}}, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->sink_tokens, 8);
}

TEST(CascadingPolicyTest, FactoryServesThePolicies) {
  int served = 0;
  for (const PolicyDescription& d : DescribeCachePolicies()) {
    if (d.kind == CachePolicyKind::kCascading || d.kind == CachePolicyKind::kTreeKv ||
        d.kind == CachePolicyKind::kFreqKv) {
      EXPECT_TRUE(d.served);
      EXPECT_FALSE(d.parameters.empty());
      ++served;
    }
  }
  EXPECT_EQ(served, 3);
  for (CachePolicyKind kind :
       {CachePolicyKind::kCascading, CachePolicyKind::kTreeKv, CachePolicyKind::kFreqKv}) {
    auto policy = MakeCachePolicy({kind, 32, {}}, {100, 10});
    ASSERT_TRUE(policy.ok()) << policy.status();
    EXPECT_EQ((*policy)->position_mode(), PositionMode::kInCache);
  }
}

TEST(CascadingPolicyTest, RefusesBadSpecsNamingTheField) {
  const auto kind = CachePolicyKind::kCascading;
  ExpectRefused(Spec(kind, 5), "cache.budget_tokens");  // S = 5 leaves W = 0
  ExpectRefused(Spec(kind, 0), "cache.budget_tokens");
  ExpectRefused(Spec(kind, 32, {{"sink_tokens", 3}}), "cache.cascading.sink_tokens");  // 29 mod 4
  ExpectRefused(Spec(kind, 32, {{"num_cascades", 0}}), "cache.cascading.num_cascades");
  ExpectRefused(Spec(kind, 32, {{"num_cascades", 2.5}}), "cache.cascading.num_cascades");
  ExpectRefused(Spec(kind, 32, {{"cascade_tokens", 0}}), "cache.cascading.cascade_tokens");
  ExpectRefused(Spec(kind, 32, {{"cascade_tokens", 9}}), "cache.cascading.cascade_tokens");
  ExpectRefused(Spec(kind, 32, {{"sink_tokens", 4}, {"cascade_tokens", 6}}),
                "cache.cascading.cascade_tokens");
  ExpectRefused(Spec(kind, 32, {{"ema_decay", 0}}), "cache.cascading.ema_decay");
  ExpectRefused(Spec(kind, 32, {{"ema_decay", 1.5}}), "cache.cascading.ema_decay");
  ExpectRefused(Spec(kind, 32, {{"head_reduction", 3}}), "cache.cascading.head_reduction");
  ExpectRefused(Spec(kind, 32, {{"window", 3}}), "cache.cascading.window");
  EXPECT_TRUE(
      MakeCachePolicy(Spec(kind, 32, {{"ema_decay", 1}, {"head_reduction", 2}}), {100, 10}).ok());
}

// Under the budget, never loses the sinks or the newest token, keeps temporal order; identical to
// FULL when the budget exceeds the stream.
TEST(CascadingPolicyTest, RandomInvariants) {
  at::manual_seed(7);
  for (const std::vector<int64_t>& steps :
       {std::vector<int64_t>(60, 1), std::vector<int64_t>{9, 1, 17, 5, 1, 1, 30, 2, 1}}) {
    for (int64_t reduction : {0, 2}) {
      CascadingParams params = Params(3, 3, 4, 0.95);
      params.head_reduction = reduction == 2 ? CascadingParams::HeadReduction::kMean
                                             : CascadingParams::HeadReduction::kMax;
      CascadingPolicy policy(params);
      KvCache cache = MakeCache(2, 8, policy.Capacity(30), 2);
      bool heads_differ = false;  // selections are per KV head
      RunRandom(policy, cache, steps, [&](const KvCache& c) {
        heads_differ =
            heads_differ || HeldInRankOrder(policy, c, 1, 0) != HeldInRankOrder(policy, c, 1, 1);
        EXPECT_LE(c.length(0), 15);
        for (int64_t h = 0; h < 2; ++h) {
          const auto held = HeldInRankOrder(policy, c, 1, h);
          for (int64_t s = 0; s < std::min<int64_t>(3, c.tokens_seen()); ++s) EXPECT_EQ(held[s], s);
          EXPECT_EQ(held.back(), c.tokens_seen() - 1);
          EXPECT_TRUE(std::is_sorted(held.begin(), held.end()));
        }
      });
      EXPECT_GT(policy.stats().evicted_tokens, 0);
      EXPECT_TRUE(heads_differ);
    }
  }
  CascadingPolicy policy(Params(2, 4, 8, 0.9));
  KvCache cache = MakeCache(2, 8, policy.Capacity(5), 2);
  auto [keys, values] = RunRandom(policy, cache, {5, 1, 1, 5, 3, 1}, [](const KvCache&) {});
  // Under the budget every token is held, in rank order as FULL holds them in slot order.
  auto slots = at::tensor(testing::SlotsInRankOrder(policy, cache, 1));
  EXPECT_TRUE(at::equal(cache.keys(1).index_select(1, slots), keys));
  EXPECT_TRUE(at::equal(cache.values(1).index_select(1, slots), values));
  EXPECT_EQ(policy.stats().evicted_tokens, 0);
}

}  // namespace
}  // namespace kvserve
