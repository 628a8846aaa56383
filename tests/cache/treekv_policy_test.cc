// TREEKV: the worked examples of policies.md §2.9 (tests A–E, §0.5 item 3) and §2.2, the one-shot
// prompt compression (§2.4, §0.5 item 17), validation and invariants on random inputs.
#include "cache/treekv_policy.h"

#include <gtest/gtest.h>

#include "tests/cache/policy_driver.h"

namespace kvserve {
namespace {

using testing::ExpectRefused;
using testing::HeldInRankOrder;
using testing::HeldInSlotOrder;
using testing::MakeCache;
using testing::RunFixtureStep;
using testing::RunRandom;
using testing::Spec;

TreeKvParams Params(int64_t sinks, int64_t tree, int64_t recent, int64_t block = 32) {
  TreeKvParams p;
  p.sink_tokens = sinks;
  p.tree_tokens = tree;
  p.recent_tokens = recent;
  p.prefill_block = block;
  return p;
}

// Decodes `tokens` tokens one by one; `mass(p, held)` injects the key mass of each held token
// (original position `held`) when given, else the §0.3 attention is used.
template <typename Mass>
std::vector<int64_t> Decode(TreeKvPolicy& policy, int64_t tokens, Mass mass) {
  KvCache cache = MakeCache(1, 2, policy.Capacity(1));
  for (int64_t p = 0; p < tokens; ++p) {
    at::Tensor key_mass;
    if constexpr (!std::is_same_v<Mass, std::nullptr_t>) {
      key_mass = at::zeros({1, cache.length(0) + 1});
      std::vector<int64_t> held = HeldInSlotOrder(cache);
      held.push_back(p);
      for (size_t j = 0; j < held.size(); ++j) key_mass[0][j] = mass(held[j]);
    }
    RunFixtureStep(policy, cache, p, 1, key_mass);
  }
  // IN-CACHE: held in temporal order by rank, so the next query's position is the length.
  std::vector<int64_t> held = HeldInRankOrder(policy, cache);
  EXPECT_TRUE(std::is_sorted(held.begin(), held.end()));
  return held;
}

// Test A: pure Algorithm 1, c = 8, §0.3 attention.
TEST(TreeKvPolicyTest, PureAlgorithmWithAttention) {
  TreeKvPolicy policy(Params(0, 8, 0));
  EXPECT_EQ(Decode(policy, 20, nullptr), (std::vector<int64_t>{0, 5, 9, 14, 16, 17, 18, 19}));
  EXPECT_EQ(policy.stats().evicted_tokens, 12);
  EXPECT_EQ(policy.stats().peak_tokens, 9);
}

// Tests B and C: every step adds exactly 1.0 to S_j of every listed token (§0.5 item 3).
TEST(TreeKvPolicyTest, EqualScoresEvictLeft) {
  TreeKvPolicy b(Params(0, 8, 0));
  EXPECT_EQ(Decode(b, 20, [](int64_t) { return 1.0; }),
            (std::vector<int64_t>{3, 7, 11, 15, 16, 17, 18, 19}));
  TreeKvPolicy c(Params(0, 4, 0));
  EXPECT_EQ(Decode(c, 17, [](int64_t) { return 1.0; }), (std::vector<int64_t>{11, 13, 15, 16}));
}

// §2.2: c = 16, 200 tokens, equal scores: the "tree".
TEST(TreeKvPolicyTest, EqualScoresThinGeometrically) {
  TreeKvPolicy policy(Params(0, 16, 0));
  std::vector<int64_t> expected = {143, 159, 167, 175, 179, 183, 187, 191};
  for (int64_t p = 192; p < 200; ++p) expected.push_back(p);
  EXPECT_EQ(Decode(policy, 200, [](int64_t) { return 1.0; }), expected);
}

// Test D: the "always keep left" ablation, realised with scores that fall with age order
// (every token's averaged attention is 1/(p+1), so the left token always wins).
TEST(TreeKvPolicyTest, KeepLeftAblation) {
  TreeKvPolicy policy(Params(0, 8, 0));
  EXPECT_EQ(Decode(policy, 20, [](int64_t p) { return 1.0 / (p + 1); }),
            (std::vector<int64_t>{0, 4, 8, 12, 16, 17, 18, 19}));
}

// Test E: composed S = 2, T = 3, R = 3.
TEST(TreeKvPolicyTest, ComposedSinksTreeRecent) {
  TreeKvPolicy policy(Params(2, 3, 3));
  EXPECT_EQ(Decode(policy, 20, nullptr), (std::vector<int64_t>{0, 1, 9, 14, 16, 17, 18, 19}));
}

// §0.5 item 8: a chunk adds its queries' attention to S and C first, then inserts its tokens in
// order with the end-of-chunk S/C. Chunks of 4 (expected from the Appendix-A fixture with that
// rule) keep the same tokens as Test A here.
TEST(TreeKvPolicyTest, ChunksOfFour) {
  TreeKvPolicy policy(Params(0, 8, 0));
  KvCache cache = MakeCache(1, 2, policy.Capacity(4));
  for (int64_t p = 0; p < 20; p += 4) RunFixtureStep(policy, cache, p, 4);
  EXPECT_EQ(HeldInRankOrder(policy, cache), (std::vector<int64_t>{0, 5, 9, 14, 16, 17, 18, 19}));
  EXPECT_EQ(policy.stats().peak_tokens, 12);
}

// §2.4 / item 17: a prompt that arrives whole is compressed block-wise from the last b queries'
// attention. Expected values from the Appendix-A fixture with the block rule (blocks aligned to
// the span's end, a leading partial block dropped, the last block always kept).
TEST(TreeKvPolicyTest, OneShotPromptBlocks) {
  struct Case {
    TreeKvParams params;
    std::vector<int64_t> expected;
  };
  for (const Case& c : {Case{Params(0, 8, 0, 2), {0, 1, 8, 9, 16, 17, 18, 19}},
                        Case{Params(2, 4, 3, 2), {0, 1, 9, 10, 15, 16, 17, 18, 19}},
                        Case{Params(0, 8, 0, 3), {8, 9, 10, 17, 18, 19}}}) {
    TreeKvParams params = c.params;
    params.prompt_tokens = 20;
    TreeKvPolicy policy(params);
    KvCache cache = MakeCache(1, 2, policy.Capacity(20));
    RunFixtureStep(policy, cache, 0, 20);
    EXPECT_EQ(HeldInRankOrder(policy, cache), c.expected);
    // Decode continues with Algorithm 1 under the budget.
    RunFixtureStep(policy, cache, 0, 1);
    EXPECT_LE(cache.length(0), params.budget());
  }
}

TEST(TreeKvPolicyTest, DefaultsFollowTheBudget) {
  auto p = TreeKvPolicy::Resolve({CachePolicyKind::kTreeKv, 32, {}}, {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->sink_tokens, 4);
  EXPECT_EQ(p->recent_tokens, 14);
  EXPECT_EQ(p->tree_tokens, 14);
  EXPECT_EQ(p->prefill_block, 32);
  p = TreeKvPolicy::Resolve({CachePolicyKind::kTreeKv, 1024, {}}, {});
  EXPECT_EQ(p->recent_tokens, 510);
  p = TreeKvPolicy::Resolve(
      {CachePolicyKind::kTreeKv, 8, {{"sink_tokens", 0}, {"recent_tokens", 0}}}, {});
  EXPECT_EQ(p->tree_tokens, 8);  // the paper's pure algorithm
  p = TreeKvPolicy::Resolve({CachePolicyKind::kTreeKv, 32, {{"tree_tokens", 20}}}, {});
  EXPECT_EQ(p->recent_tokens, 8);
}

TEST(TreeKvPolicyTest, RefusesBadSpecsNamingTheField) {
  const auto kind = CachePolicyKind::kTreeKv;
  ExpectRefused(Spec(kind, 4), "cache.budget_tokens");
  ExpectRefused(Spec(kind, 32, {{"recent_tokens", 28}}), "cache.treekv.recent_tokens");
  ExpectRefused(Spec(kind, 32, {{"sink_tokens", 33}}), "cache.treekv.sink_tokens");
  ExpectRefused(Spec(kind, 32, {{"sink_tokens", 1.5}}), "cache.treekv.sink_tokens");
  ExpectRefused(Spec(kind, 32, {{"tree_tokens", 0}}), "cache.treekv.tree_tokens");
  ExpectRefused(Spec(kind, 32, {{"tree_tokens", 30}}), "cache.treekv.tree_tokens");
  ExpectRefused(Spec(kind, 32, {{"recent_tokens", 4}, {"tree_tokens", 4}}),
                "cache.treekv.tree_tokens");
  ExpectRefused(Spec(kind, 32, {{"prefill_block", 0}}), "cache.treekv.prefill_block");
  ExpectRefused(Spec(kind, 32, {{"cascade_tokens", 3}}), "cache.treekv.cascade_tokens");
  EXPECT_TRUE(MakeCachePolicy(Spec(kind, 5), {100, 10}).ok());
}

TEST(TreeKvPolicyTest, RandomInvariants) {
  at::manual_seed(11);
  for (const std::vector<int64_t>& steps :
       {std::vector<int64_t>(50, 1), std::vector<int64_t>{7, 1, 12, 3, 1, 1, 25, 2, 1}}) {
    for (int64_t recent : {0, 3}) {
      TreeKvPolicy policy(Params(2, 6, recent));
      const int64_t budget = 8 + recent;
      KvCache cache = MakeCache(2, 8, policy.Capacity(25), 2);
      RunRandom(policy, cache, steps, [&](const KvCache& c) {
        EXPECT_LE(c.length(1), budget);
        for (int64_t h = 0; h < 2; ++h) {
          const auto held = HeldInRankOrder(policy, c, 1, h);
          for (int64_t s = 0; s < std::min<int64_t>(2, c.tokens_seen()); ++s) EXPECT_EQ(held[s], s);
          if (recent > 0) {
            EXPECT_EQ(held.back(), c.tokens_seen() - 1);
          }
          EXPECT_TRUE(std::is_sorted(held.begin(), held.end()));
        }
      });
      EXPECT_GT(policy.stats().evicted_tokens, 0);
    }
  }
  TreeKvPolicy policy(Params(2, 20, 10));
  KvCache cache = MakeCache(2, 8, policy.Capacity(6), 2);
  auto [keys, values] = RunRandom(policy, cache, {6, 1, 1, 6, 3, 1}, [](const KvCache&) {});
  // Under the budget every token is held, in rank order as FULL holds them in slot order.
  auto slots = at::tensor(testing::SlotsInRankOrder(policy, cache, 1));
  EXPECT_TRUE(at::equal(cache.keys(1).index_select(1, slots), keys));
  EXPECT_TRUE(at::equal(cache.values(1).index_select(1, slots), values));
}

}  // namespace
}  // namespace kvserve
