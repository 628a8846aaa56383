// FREQKV: the worked examples of policies.md §3.9 (the transform, T(8, 4), the iteration schedule),
// §0.5 items 10 and 18, validation and invariants on random inputs.
#include "cache/freqkv_policy.h"

#include <gtest/gtest.h>

#include "tests/cache/policy_driver.h"

namespace kvserve {
namespace {

using testing::ExpectRefused;
using testing::HeldInSlotOrder;
using testing::MakeCache;
using testing::RunRandom;
using testing::RunStep;
using testing::Spec;

void ExpectNear(const at::Tensor& actual, const std::vector<double>& expected, double tolerance) {
  ASSERT_EQ(actual.numel(), static_cast<int64_t>(expected.size()));
  auto flat = actual.to(at::kDouble).contiguous().view(-1);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(flat[i].item<double>(), expected[i], tolerance) << "at " << i;
  }
}

// Test A: N = 8 → L = 4.
TEST(FreqKvPolicyTest, TransformMatchesTheDct) {
  auto t = FreqKvPolicy::CompressionMatrix(8, 4);
  ExpectNear(t[0], {0.5944, 0.3660, 0.0918, -0.0464, -0.0302, 0.0229, 0.0193, -0.0178}, 5e-5);
  ExpectNear(t.sum(1), {1, 1, 1, 1}, 1e-12);
  ExpectNear(at::matmul(t, at::arange(1, 9, at::kDouble)), {1.395175, 3.578410, 5.421590, 7.604825},
             1e-6);
  ExpectNear(at::matmul(t, at::full({8}, 3.0, at::kDouble)), {3, 3, 3, 3}, 1e-12);
  auto alternating = at::tensor({1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0}, at::kDouble);
  ExpectNear(at::matmul(t, alternating), {0.350557, -0.180240, 0.180240, -0.350557}, 1e-6);
}

FreqKvParams Params(int64_t cap, int64_t sinks, int64_t recent = 0) {
  FreqKvParams p;
  p.cache_tokens = cap;
  p.sink_tokens = sinks;
  p.recent_tokens = recent;
  return p;
}

// Steps of one channel whose value for token p is p (keys and values alike).
void RunValueSteps(FreqKvPolicy& policy, KvCache& cache, int64_t first, int64_t n) {
  auto x = at::arange(first, first + n, at::kFloat).view({1, n, 1});
  RunStep(policy, cache, x, x, at::zeros({n, 1, 1}));
}

// Test B: N_cap = 12, S = 2, γ = 1/2 (N_c = 10, L = 5), 22 tokens. Compression runs at the end of
// the step that fills the cache (the spec's "before the next token"), so the spec's state "before
// token 22" is checked after token 20, and after token 21 the third compression has run.
TEST(FreqKvPolicyTest, IterationSchedule) {
  for (bool chunked : {false, true}) {
    FreqKvPolicy policy(Params(12, 2));
    KvCache cache = MakeCache(1, 1, policy.Capacity(12));
    for (int64_t p = 0; p < 22;) {
      // Chunked prefill under MaxStepTokens (§0.5 item 10): chunks of 12, 5, 5.
      const int64_t n = chunked ? policy.MaxStepTokens(cache, 22 - p) : 1;
      RunValueSteps(policy, cache, p, n);
      p += n;
      if (p == 12) {
        EXPECT_EQ(cache.length(0), 7);
        ExpectNear(cache.values(0).narrow(1, 2, 5), {2.4074, 4.5388, 6.5, 8.4612, 10.5926}, 5e-5);
      }
      if (p == 21) {
        ASSERT_EQ(cache.length(0), 11);
        ExpectNear(cache.values(0),
                   {0, 1, 3.2634, 7.6323, 11.2721, 13.4994, 15.5829, 17, 18, 19, 20}, 5e-5);
        ExpectNear(cache.keys(0), {0, 1, 3.2634, 7.6323, 11.2721, 13.4994, 15.5829, 17, 18, 19, 20},
                   5e-5);
      }
    }
    ASSERT_EQ(cache.length(0), 7);  // the next query (token 22) gets position 2 + 5 = 7
    ExpectNear(cache.values(0), {0, 1, 5.0759, 12.7711, 16.151, 18.5647, 20.5622}, 5e-4);
    // Representative positions: the centre entry of each pseudo-token's interval, entries 1, 3, 5,
    // 7, 9 of every span: 3, 5, 7, 9, 11 → 5, 9, 12, 14, 16 → 9, 14, 17, 19, 21.
    EXPECT_EQ(HeldInSlotOrder(cache), (std::vector<int64_t>{0, 1, 9, 14, 17, 19, 21}));
    EXPECT_EQ(policy.stats().compression_events, 3);
    EXPECT_EQ(policy.stats().evicted_tokens, 15);
    EXPECT_EQ(policy.stats().peak_tokens, 12);
  }
}

// A recent window stays raw.
TEST(FreqKvPolicyTest, RecentTokensStayRaw) {
  FreqKvPolicy policy(Params(12, 2, 3));  // N_c = 7, L = 3
  KvCache cache = MakeCache(1, 1, policy.Capacity(1));
  for (int64_t p = 0; p < 12; ++p) RunValueSteps(policy, cache, p, 1);
  ASSERT_EQ(cache.length(0), 2 + 3 + 3);
  ExpectNear(cache.values(0).narrow(1, 5, 3), {9, 10, 11}, 0);
  auto x = at::arange(2, 9, at::kDouble);
  auto expected = at::matmul(FreqKvPolicy::CompressionMatrix(7, 3), x);
  ExpectNear(cache.values(0).narrow(1, 2, 3).view(-1),
             {expected[0].item<double>(), expected[1].item<double>(), expected[2].item<double>()},
             1e-5);
}

TEST(FreqKvPolicyTest, DefaultsAndIntegerRatio) {
  auto p = FreqKvPolicy::Resolve({CachePolicyKind::kFreqKv, 32, {}}, {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->cache_tokens, 32);
  EXPECT_EQ(p->span(), 28);
  EXPECT_EQ(p->kept_frequencies(), 14);
  // §0.5 item 18: N_c = 100, γ = 29/100 → L = 29.
  p = FreqKvPolicy::Resolve(
      {CachePolicyKind::kFreqKv, 104, {{"ratio_numerator", 29}, {"ratio_denominator", 100}}}, {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kept_frequencies(), 29);
}

TEST(FreqKvPolicyTest, RefusesBadSpecsNamingTheField) {
  const auto kind = CachePolicyKind::kFreqKv;
  ExpectRefused(Spec(kind, 5), "cache.budget_tokens");  // N_c = 1
  ExpectRefused(Spec(kind, 32, {{"cache_tokens", 33}}), "cache.freqkv.cache_tokens");
  ExpectRefused(Spec(kind, 32, {{"cache_tokens", 5}}), "cache.freqkv.cache_tokens");  // N_c = 1
  ExpectRefused(Spec(kind, 32, {{"sink_tokens", 31}}), "cache.freqkv.sink_tokens");
  ExpectRefused(Spec(kind, 32, {{"recent_tokens", -1}}), "cache.freqkv.recent_tokens");
  ExpectRefused(Spec(kind, 32, {{"ratio_numerator", 1}, {"ratio_denominator", 100}}),
                "cache.freqkv.ratio_numerator");  // L = 0
  ExpectRefused(Spec(kind, 32, {{"ratio_numerator", 2}, {"ratio_denominator", 2}}),
                "cache.freqkv.ratio_numerator");  // L = N_c
  ExpectRefused(Spec(kind, 32, {{"ratio_denominator", 0}}), "cache.freqkv.ratio_denominator");
  ExpectRefused(Spec(kind, 32, {{"ratio_denominator", 2.5}}), "cache.freqkv.ratio_denominator");
  ExpectRefused(Spec(kind, 32, {{"ema_decay", 0.5}}), "cache.freqkv.ema_decay");
}

TEST(FreqKvPolicyTest, RandomInvariants) {
  at::manual_seed(5);
  FreqKvPolicy policy(Params(16, 3));
  KvCache cache = MakeCache(2, 8, policy.Capacity(16), 2);
  int64_t seen = 0;
  while (seen < 80) {
    const int64_t n = policy.MaxStepTokens(cache, seen < 40 ? 9 : 1);
    ASSERT_GE(n, 1);
    auto sinks_before = cache.keys(1).narrow(1, 0, std::min<int64_t>(3, cache.length(1))).clone();
    RunRandom(policy, cache, {n}, [&](const KvCache& c) {
      EXPECT_LT(c.length(0), 16);
      EXPECT_TRUE(at::equal(c.keys(1).narrow(1, 0, sinks_before.size(1)), sinks_before));
      EXPECT_EQ(HeldInSlotOrder(c, 1, 1).front(), 0);
    });
    seen += n;
  }
  EXPECT_GT(policy.stats().compression_events, 0);
  FreqKvPolicy full(Params(32, 4));
  KvCache fresh = MakeCache(2, 8, full.Capacity(8), 2);
  auto [keys, values] = RunRandom(full, fresh, {8, 1, 1, 8, 3}, [](const KvCache&) {});
  EXPECT_TRUE(at::equal(fresh.keys(1), keys));
  EXPECT_TRUE(at::equal(fresh.values(1), values));
}

}  // namespace
}  // namespace kvserve
