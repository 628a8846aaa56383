// StreamingLLM (policies.md §4.1, §0.5 items 1, 6, 19): worked example, validation, invariants.
#include "cache/streaming_llm_policy.h"

#include <gtest/gtest.h>

#include "cache/full_policy.h"
#include "tests/cache/policy_driver.h"

namespace kvserve {
namespace {

using testing::FeedChunks;
using testing::FeedStep;
using testing::FixtureKeyMass;
using testing::HeldPositions;
using testing::Spec;

std::unique_ptr<CachePolicy> MakeStreaming(int64_t budget, std::map<std::string, double> params) {
  auto policy = MakeCachePolicy(Spec(CachePolicyKind::kStreamingLlm, budget, params), {20, 10});
  EXPECT_TRUE(policy.ok()) << policy.status();
  return std::move(*policy);
}

std::vector<int64_t> Range(int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  for (int64_t p = begin; p < end; ++p) out.push_back(p);
  return out;
}

TEST(StreamingLlmPolicyTest, WorkedExampleTokenByToken) {
  auto policy = MakeStreaming(8, {{"sink_tokens", 2}});
  EXPECT_EQ(policy->position_mode(), PositionMode::kShiftedSinks);
  auto stream = testing::FixtureStream();
  KvCache cache = testing::MakeCache(stream, policy->Capacity(1));
  for (int64_t p = 0; p < 20; ++p) {
    // §0.5 item 1: the query of token 19 attends the 9 keys [0, 1, 13..19] (ranks 0..8).
    FeedStep(*policy, cache, stream, 1, FixtureKeyMass, [&](const KvCache& c, const LayerStep& s) {
      if (p != 19) return;
      std::vector<int64_t> expected = {0, 1, 13, 14, 15, 16, 17, 18, 19};
      EXPECT_EQ(HeldPositions(c, 0), expected);
      EXPECT_EQ(s.keys.size(1), 9);
    });
  }
  std::vector<int64_t> expected = {0, 1, 14, 15, 16, 17, 18, 19};
  EXPECT_EQ(HeldPositions(cache, 0), expected);
  // Slots stay in temporal order, so ranks 0..7 go to these tokens and token 20's query has rank 8.
  auto slots = cache.positions(0)[0];
  EXPECT_TRUE(at::equal(slots, at::tensor(expected, at::kLong)));
  EXPECT_EQ(cache.length(0), 8);
  testing::ExpectSlotsMatchStream(cache, stream);
  EXPECT_EQ(policy->stats().peak_tokens, 9);
  EXPECT_EQ(policy->stats().evicted_tokens, 12);
  EXPECT_EQ(policy->stats().compression_events, 12);
}

TEST(StreamingLlmPolicyTest, ChunkedPrefillCutsBackToSinksAndWindow) {
  // Peak = the most held inside a step: 8 + chunk, or less when the last chunk is short.
  for (auto [chunk, peak] :
       std::vector<std::pair<int64_t, int64_t>>{{2, 10}, {4, 12}, {7, 14}, {20, 20}}) {
    auto policy = MakeStreaming(8, {{"sink_tokens", 2}, {"window_tokens", 6}});
    auto stream = testing::FixtureStream();
    KvCache cache = testing::MakeCache(stream, policy->Capacity(chunk));
    FeedChunks(*policy, cache, stream, 20, chunk, FixtureKeyMass);
    EXPECT_EQ(HeldPositions(cache, 0), (std::vector<int64_t>{0, 1, 14, 15, 16, 17, 18, 19}))
        << "chunk " << chunk;
    EXPECT_EQ(policy->stats().peak_tokens, peak) << "chunk " << chunk;
    EXPECT_EQ(policy->stats().evicted_tokens, 12) << "chunk " << chunk;
  }
}

TEST(StreamingLlmPolicyTest, DefaultsFollowTheBudget) {
  auto params = StreamingLlmPolicy::Resolve(Spec(CachePolicyKind::kStreamingLlm, 32), {});
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->sink_tokens, 4);
  EXPECT_EQ(params->window_tokens, 28);
  params = StreamingLlmPolicy::Resolve(
      Spec(CachePolicyKind::kStreamingLlm, 5, {{"sink_tokens", 0}}), {});
  ASSERT_TRUE(params.ok()) << params.status();  // a plain sliding window
  EXPECT_EQ(params->window_tokens, 5);
  EXPECT_EQ(StreamingLlmPolicy(*params).Capacity(16), 21);
}

TEST(StreamingLlmPolicyTest, RefusesBadSpecsNamingTheField) {
  using testing::ExpectRefused;
  const auto kind = CachePolicyKind::kStreamingLlm;
  ExpectRefused(Spec(kind, 4), "cache.budget_tokens");  // default S = 4 needs B >= 5
  ExpectRefused(Spec(kind, 0), "cache.budget_tokens");
  ExpectRefused(Spec(kind, 8, {{"sink_tokens", 8}}), "cache.budget_tokens");
  ExpectRefused(Spec(kind, 8, {{"sink_tokens", -1}}), "cache.streaming_llm.sink_tokens");
  ExpectRefused(Spec(kind, 8, {{"sink_tokens", 2.5}}), "cache.streaming_llm.sink_tokens");
  ExpectRefused(Spec(kind, 8, {{"sink_tokens", 2}, {"window_tokens", 5}}),
                "cache.streaming_llm.window_tokens");
  ExpectRefused(Spec(kind, 8, {{"window_tokens", 1e300}}), "cache.streaming_llm.window_tokens");
  ExpectRefused(Spec(kind, 8, {{"recent_tokens", 4}}), "cache.streaming_llm.recent_tokens");
}

TEST(StreamingLlmPolicyTest, DescribesItsParameters) {
  auto description = StreamingLlmPolicy::Describe();
  EXPECT_TRUE(description.served);
  ASSERT_EQ(description.parameters.size(), 2u);
  EXPECT_EQ(description.parameters[0].name, "sink_tokens");
  EXPECT_EQ(description.parameters[1].default_rule, "budget - sink_tokens");
}

// Random keys, several heads and layers, token-by-token and chunked.
TEST(StreamingLlmPolicyTest, InvariantsOnRandomInputs) {
  const int64_t tokens = 50;
  for (int64_t chunk : {1, 3, 16}) {
    auto stream = testing::RandomStream(2, 3, 2, tokens, 8, 7 + chunk);
    auto policy = MakeStreaming(12, {{"sink_tokens", 3}});
    KvCache cache = testing::MakeCache(stream, policy->Capacity(chunk));
    FeedChunks(*policy, cache, stream, tokens, chunk, testing::AttentionKeyMass, [&] {
      const int64_t seen = cache.tokens_seen();
      for (int64_t layer = 0; layer < 2; ++layer) {
        ASSERT_EQ(cache.length(layer), std::min<int64_t>(seen, 12));
        for (int64_t head = 0; head < 3; ++head) {
          auto held = HeldPositions(cache, layer, head);
          auto expected = seen <= 12 ? Range(0, seen) : Range(0, 3);
          if (seen > 12) {
            for (int64_t p : Range(seen - 9, seen)) expected.push_back(p);
          }
          ASSERT_EQ(held, expected) << "chunk " << chunk << " seen " << seen;
          // Ordered by rank (the ring once decoding evicts) the slots are temporal: ranks are
          // what the model rotates keys with.
          auto ranks = SlotRanks(policy->ring_layout(layer), cache.length(layer), at::kCPU);
          auto by_rank = at::empty({cache.length(layer)}, at::kLong);
          by_rank.index_put_({ranks}, cache.positions(layer)[head]);
          ASSERT_TRUE(at::equal(by_rank, at::tensor(held, at::kLong)));
        }
      }
    });
    testing::ExpectSlotsMatchStream(cache, stream);
  }
}

TEST(StreamingLlmPolicyTest, SameAsFullWhenTheBudgetExceedsTheSequence) {
  const int64_t tokens = 30;
  for (int64_t chunk : {1, 7}) {
    auto stream = testing::RandomStream(2, 2, 2, tokens, 8, 3);
    auto policy = MakeStreaming(40, {});
    FullPolicy full(tokens);
    KvCache cache = testing::MakeCache(stream, policy->Capacity(chunk));
    KvCache full_cache = testing::MakeCache(stream, full.Capacity(chunk));
    FeedChunks(*policy, cache, stream, tokens, chunk, testing::AttentionKeyMass);
    FeedChunks(full, full_cache, stream, tokens, chunk, testing::AttentionKeyMass);
    for (int64_t layer = 0; layer < 2; ++layer) {
      EXPECT_TRUE(at::equal(cache.keys(layer), full_cache.keys(layer)));
      EXPECT_TRUE(at::equal(cache.values(layer), full_cache.values(layer)));
      EXPECT_TRUE(at::equal(cache.positions(layer), full_cache.positions(layer)));
    }
    EXPECT_EQ(policy->stats().evicted_tokens, 0);
  }
}

}  // namespace
}  // namespace kvserve
