// H2O (policies.md §4.2, §0.5 items 2, 4, 5, 7): worked examples token by token and chunked, ties,
// validation, and a host-side mirror of the rule on random inputs.
#include "cache/h2o_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "cache/full_policy.h"
#include "tests/cache/policy_driver.h"

namespace kvserve {
namespace {

using testing::FeedChunks;
using testing::FixtureKeyMass;
using testing::HeldPositions;
using testing::Spec;

std::unique_ptr<H2oPolicy> MakeH2o(int64_t heavy, int64_t recent) {
  auto params = H2oPolicy::Resolve(
      Spec(CachePolicyKind::kH2o, heavy + recent, {{"heavy_tokens", heavy}}), {20, 10});
  EXPECT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->recent_tokens, recent);
  return std::make_unique<H2oPolicy>(*params);
}

// Runs the 20-token fixture in steps of `chunk`; returns the held positions.
std::vector<int64_t> RunFixture(H2oPolicy& policy, int64_t chunk) {
  auto stream = testing::FixtureStream();
  KvCache cache = testing::MakeCache(stream, policy.Capacity(chunk));
  FeedChunks(policy, cache, stream, 20, chunk, FixtureKeyMass, [&] {
    EXPECT_LE(cache.length(0), policy.budget());
    EXPECT_EQ(policy.scores(cache, 0).size(1), cache.length(0));
  });
  testing::ExpectSlotsMatchStream(cache, stream);
  return HeldPositions(cache, 0);
}

TEST(H2oPolicyTest, WorkedExampleTokenByToken) {
  auto policy = MakeH2o(4, 4);
  EXPECT_TRUE(policy->wants_key_mass());
  EXPECT_EQ(policy->position_mode(), PositionMode::kOriginal);
  auto stream = testing::FixtureStream();
  KvCache cache = testing::MakeCache(stream, policy->Capacity(1));
  FeedChunks(*policy, cache, stream, 20, 1, FixtureKeyMass);
  EXPECT_EQ(HeldPositions(cache, 0), (std::vector<int64_t>{0, 2, 5, 9, 16, 17, 18, 19}));
  // Accumulated scores of the heavy hitters, found by position (decode evictions reorder slots).
  std::map<int64_t, float> expected = {{0, 7.9581f}, {2, 1.7477f}, {5, 3.1675f}, {9, 2.4059f}};
  for (int64_t slot = 0; slot < cache.length(0); ++slot) {
    const int64_t p = cache.positions(0)[0][slot].item<int64_t>();
    if (!expected.contains(p)) continue;
    EXPECT_NEAR(policy->scores(cache, 0)[0][slot].item<float>(), expected[p], 1e-4)
        << "token " << p;
  }
  EXPECT_EQ(policy->stats().peak_tokens, 9);
  EXPECT_EQ(policy->stats().evicted_tokens, 12);
  EXPECT_EQ(policy->stats().compression_events, 12);
}

// §0.5 item 7 (heavy 3, recent 3): the chunking changes which tokens survive.
TEST(H2oPolicyTest, ChunkedPrefillVariants) {
  const std::vector<int64_t> by_token = {0, 2, 5, 17, 18, 19};
  const std::vector<int64_t> one_shot = {0, 5, 9, 17, 18, 19};
  EXPECT_EQ(RunFixture(*MakeH2o(3, 3), 1), by_token);
  EXPECT_EQ(RunFixture(*MakeH2o(3, 3), 20), one_shot);
  EXPECT_EQ(RunFixture(*MakeH2o(3, 3), 4), one_shot);
  EXPECT_EQ(RunFixture(*MakeH2o(3, 3), 2), by_token);
}

// Key mass that gives every token `base` once, when it arrives, plus `bonus` for listed tokens:
// scores are then injected exactly, per head.
testing::KeyMassFn InjectedMass(std::vector<std::map<int64_t, float>> bonus_per_head) {
  return [bonus_per_head](const KvCache& cache, int64_t layer, const at::Tensor& queries) {
    const int64_t n = queries.size(0), length = cache.length(layer);
    auto mass = at::zeros({cache.shape().num_kv_heads, length});
    for (int64_t h = 0; h < mass.size(0); ++h) {
      for (int64_t j = length - n; j < length; ++j) {
        const int64_t p = cache.positions(layer)[h][j].item<int64_t>();
        auto it = bonus_per_head[h].find(p);
        mass[h][j] = 1.0f + (it == bonus_per_head[h].end() ? 0.0f : it->second);
      }
    }
    return mass;
  };
}

// §0.5 item 2: equal scores keep the older token, in decode (one eviction) and chunked.
TEST(H2oPolicyTest, TiesKeepTheOlderToken) {
  for (int64_t chunk : {1, 3, 10}) {
    auto stream = testing::RandomStream(1, 2, 1, 10, 4, 1);
    H2oPolicy policy({2, 2});
    KvCache cache = testing::MakeCache(stream, policy.Capacity(chunk));
    // Head 0: all equal (the oldest two win). Head 1: token 6 scores more, then the oldest wins.
    FeedChunks(policy, cache, stream, 10, chunk, InjectedMass({{}, {{6, 1.0f}}}));
    EXPECT_EQ(HeldPositions(cache, 0, 0), (std::vector<int64_t>{0, 1, 8, 9})) << "chunk " << chunk;
    EXPECT_EQ(HeldPositions(cache, 0, 1), (std::vector<int64_t>{0, 6, 8, 9})) << "chunk " << chunk;
    testing::ExpectSlotsMatchStream(cache, stream);
  }
}

TEST(H2oPolicyTest, DefaultsFollowTheBudget) {
  auto resolve = [](int64_t budget, std::map<std::string, double> params) {
    auto p = H2oPolicy::Resolve(Spec(CachePolicyKind::kH2o, budget, params), {});
    EXPECT_TRUE(p.ok()) << p.status();
    return std::make_pair(p->heavy_tokens, p->recent_tokens);
  };
  EXPECT_EQ(resolve(8, {}), std::make_pair(int64_t{4}, int64_t{4}));
  EXPECT_EQ(resolve(9, {}), std::make_pair(int64_t{5}, int64_t{4}));
  EXPECT_EQ(resolve(8, {{"heavy_tokens", 3}}), std::make_pair(int64_t{3}, int64_t{5}));
  EXPECT_EQ(resolve(8, {{"recent_tokens", 2}}), std::make_pair(int64_t{6}, int64_t{2}));
  EXPECT_EQ(H2oPolicy({3, 5}).Capacity(16), 24);
}

TEST(H2oPolicyTest, RefusesBadSpecsNamingTheField) {
  using testing::ExpectRefused;
  const auto kind = CachePolicyKind::kH2o;
  ExpectRefused(Spec(kind, 1), "cache.budget_tokens");
  ExpectRefused(Spec(kind, 8, {{"heavy_tokens", 0}}), "cache.h2o.heavy_tokens must be >= 1, got 0");
  ExpectRefused(Spec(kind, 8, {{"recent_tokens", 0}}), "cache.h2o.recent_tokens");
  ExpectRefused(Spec(kind, 8, {{"heavy_tokens", 8}}), "cache.h2o.heavy_tokens must be <= ");
  ExpectRefused(Spec(kind, 8, {{"recent_tokens", 9}}), "cache.h2o.recent_tokens must be <= ");
  ExpectRefused(Spec(kind, 8, {{"heavy_tokens", 4}, {"recent_tokens", 0}}),
                "cache.h2o.recent_tokens must be >= 1, got 0");
  ExpectRefused(Spec(kind, 8, {{"heavy_tokens", 3}, {"recent_tokens", 3}}),
                "cache.h2o.heavy_tokens + cache.h2o.recent_tokens");
  ExpectRefused(Spec(kind, 8, {{"heavy_tokens", 3.5}}), "cache.h2o.heavy_tokens");
  ExpectRefused(Spec(kind, 8, {{"sink_tokens", 4}}), "cache.h2o.sink_tokens");
}

// A host-side mirror of §4.2 / §0.5 item 7 per (layer, head), fed the key mass the policy sees.
class H2oMirror {
 public:
  H2oMirror(int64_t layers, int64_t heads, int64_t heavy, int64_t recent)
      : heavy_(heavy),
        recent_(recent),
        held_(layers * heads),
        scores_(layers * heads),
        heads_(heads) {}

  void Step(const KvCache& cache, const LayerStep& step) {
    for (int64_t h = 0; h < heads_; ++h) {
      auto& held = held_[step.layer * heads_ + h];
      auto& scores = scores_[step.layer * heads_ + h];
      const int64_t length = cache.length(step.layer);
      for (int64_t j = 0; j < length; ++j) {
        const int64_t p = cache.positions(step.layer)[h][j].item<int64_t>();
        if (j >= length - step.new_tokens) held.push_back(p);
        scores[p] += step.key_mass[h][j].item<float>();
      }
      if (length <= heavy_ + recent_) continue;
      std::vector<int64_t> old(held.begin(), held.end() - recent_);
      std::stable_sort(old.begin(), old.end(),
                       [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
      old.resize(heavy_);
      std::sort(old.begin(), old.end());
      old.insert(old.end(), held.end() - recent_, held.end());
      held = old;
    }
  }
  std::vector<int64_t> Held(int64_t layer, int64_t head) const {
    return held_[layer * heads_ + head];
  }
  float Score(int64_t layer, int64_t head, int64_t p) { return scores_[layer * heads_ + head][p]; }

 private:
  int64_t heavy_, recent_;
  std::vector<std::vector<int64_t>> held_;
  std::vector<std::map<int64_t, float>> scores_;
  int64_t heads_;
};

TEST(H2oPolicyTest, MatchesAHostMirrorOnRandomInputs) {
  const int64_t tokens = 40, layers = 2, kv_heads = 3;
  for (int64_t chunk : {1, 5, 13}) {
    auto stream = testing::RandomStream(layers, kv_heads, 2, tokens, 8, 11 + chunk);
    H2oPolicy policy({4, 3});
    H2oMirror mirror(layers, kv_heads, 4, 3);
    KvCache cache = testing::MakeCache(stream, policy.Capacity(chunk));
    auto check = [&] {
      for (int64_t layer = 0; layer < layers; ++layer) {
        ASSERT_EQ(cache.length(layer), std::min<int64_t>(cache.tokens_seen(), 7));
        for (int64_t h = 0; h < kv_heads; ++h) {
          auto held = HeldPositions(cache, layer, h);
          ASSERT_EQ(held, mirror.Held(layer, h)) << "chunk " << chunk;
          ASSERT_EQ(held.back(), cache.tokens_seen() - 1);  // the newest token is kept
          for (int64_t slot = 0; slot < cache.length(layer); ++slot) {
            const int64_t p = cache.positions(layer)[h][slot].item<int64_t>();
            ASSERT_EQ(policy.scores(cache, layer)[h][slot].item<float>(),
                      mirror.Score(layer, h, p));
          }
        }
      }
    };
    FeedChunks(policy, cache, stream, tokens, chunk, testing::AttentionKeyMass, check,
               [&](const KvCache& c, const LayerStep& s) { mirror.Step(c, s); });
    testing::ExpectSlotsMatchStream(cache, stream);
  }
}

TEST(H2oPolicyTest, SameAsFullWhenTheBudgetExceedsTheSequence) {
  const int64_t tokens = 30;
  for (int64_t chunk : {1, 7}) {
    auto stream = testing::RandomStream(2, 2, 2, tokens, 8, 5);
    H2oPolicy policy({16, 16});
    FullPolicy full(tokens);
    KvCache cache = testing::MakeCache(stream, policy.Capacity(chunk));
    KvCache full_cache = testing::MakeCache(stream, full.Capacity(chunk));
    FeedChunks(policy, cache, stream, tokens, chunk, testing::AttentionKeyMass);
    FeedChunks(full, full_cache, stream, tokens, chunk, testing::AttentionKeyMass);
    for (int64_t layer = 0; layer < 2; ++layer) {
      EXPECT_TRUE(at::equal(cache.keys(layer), full_cache.keys(layer)));
      EXPECT_TRUE(at::equal(cache.values(layer), full_cache.values(layer)));
      EXPECT_TRUE(at::equal(cache.positions(layer), full_cache.positions(layer)));
    }
    EXPECT_EQ(policy.stats().evicted_tokens, 0);
  }
}

}  // namespace
}  // namespace kvserve
