#include "scheduler/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace kvserve {
namespace {

SamplingParams Sampling(float temperature, int32_t top_k = 0, float top_p = 1, float min_p = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

TEST(SamplerTest, GreedyTakesTheLowestIdAmongEqualMaxima) {
  Sampler sampler(Sampling(0), 1, {});
  const std::vector<float> logits = {0.5f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(sampler.Sample(logits), 1);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> logits(64);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  auto draw = [&](uint64_t seed) {
    Sampler sampler(Sampling(1.0f), seed, {});
    std::vector<int32_t> ids;
    for (int i = 0; i < 32; ++i) ids.push_back(sampler.Sample(logits));
    return ids;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(SamplerTest, TopKTopPAndMinPRestrictTheCandidates) {
  // Probabilities at temperature 1: about 0.64, 0.24, 0.09, 0.03.
  const std::vector<float> logits = {3.0f, 2.0f, 1.0f, 0.0f};
  auto support = [&](const SamplingParams& p) {
    Sampler sampler(p, 3, {});
    std::map<int32_t, int> seen;
    for (int i = 0; i < 2000; ++i) ++seen[sampler.Sample(logits)];
    return seen;
  };
  EXPECT_EQ(support(Sampling(1.0f, 2)).size(), 2u);
  EXPECT_EQ(support(Sampling(1.0f, 0, 0.8f)).size(), 2u);        // 0.64 < 0.8 <= 0.88
  EXPECT_EQ(support(Sampling(1.0f, 0, 1.0f, 0.2f)).size(), 2u);  // 0.09 < 0.2 * 0.64
  EXPECT_EQ(support(Sampling(1.0f)).size(), 4u);
}

TEST(SamplerTest, RepetitionPenaltyDemotesSeenTokens) {
  SamplingParams p = Sampling(0);
  p.repetition_penalty = 2.0f;
  const std::vector<int32_t> prompt = {0};
  Sampler sampler(p, 1, prompt);
  const std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  EXPECT_EQ(sampler.Sample(logits), 1);  // 3 / 2 = 1.5 < 2
  EXPECT_EQ(sampler.Sample(logits), 0);  // 1 is now penalised too: 1.5 > 1
}

TEST(SamplerTest, ValidationNamesTheField) {
  SamplingParams p;
  p.top_p = 1.5f;
  auto status = ValidateSamplingParams(p, 100);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("sampling.top_p"), std::string::npos);
  p = SamplingParams();
  p.temperature = std::nanf("");
  EXPECT_NE(ValidateSamplingParams(p, 100).message().find("sampling.temperature"),
            std::string::npos);
  p = SamplingParams();
  p.max_new_tokens = 101;
  EXPECT_NE(ValidateSamplingParams(p, 100).message().find("sampling.max_new_tokens"),
            std::string::npos);
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams(), 100).ok());
}

}  // namespace
}  // namespace kvserve
