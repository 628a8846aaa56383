// The quality tool on the real model: FULL compared with itself has zero divergence, and its
// perplexity is the teacher-forced scoring's; the story stream starts each story with BOS.
#include "tools/quality_eval.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/scoring.h"
#include "tests/test_support.h"
#include "tools/story_stream.h"

namespace kvserve {
namespace {

TEST(QualityEvalTest, FullAgainstItselfHasNoDivergenceAndScoringPerplexity) {
  KVSERVE_REQUIRE_STORIES260K();
  auto tokenizer = Tokenizer::Load(testing::Stories260kDir());
  ASSERT_TRUE(tokenizer.ok());
  auto stream =
      StoryStream(**tokenizer, testing::SharedDir() + "/data/tinystories/valid.txt", 0, 300);
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_EQ(stream->size(), 300u);
  EXPECT_EQ((*stream)[0], (*tokenizer)->bos_id());
  EXPECT_GT(std::count(stream->begin(), stream->end(), (*tokenizer)->bos_id()), 1);  // 2+ stories

  auto model = LlamaModel::Load(testing::Stories260kDir(), {});
  ASSERT_TRUE(model.ok());
  QualityOptions options;
  options.policies = {CacheSpec{CachePolicyKind::kFull, 0, {}}};
  options.lengths = {100, 300};
  auto rows = EvaluateQuality(**model, *stream, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 4u);  // (FULL, FULL as a policy) × 2 lengths
  auto nll = TokenNll(**model, *stream);
  ASSERT_TRUE(nll.ok());
  double sum = 0;
  for (double v : *nll) sum += v;
  const QualityRow& full300 = (*rows)[2];
  EXPECT_EQ(full300.length, 300);
  EXPECT_NEAR(full300.perplexity, std::exp(sum / nll->size()), 1e-6);
  for (const QualityRow& row : *rows) {
    EXPECT_NEAR(row.mean_kl, 0.0, 1e-12);
    EXPECT_DOUBLE_EQ(row.top1_agreement, 1.0);
  }
  EXPECT_NE(QualityMarkdown(*rows).find("| FULL | — | 300 |"), std::string::npos);
  EXPECT_EQ(QualityCsv(*rows).rfind("policy,budget,length", 0), 0u);
}

TEST(QualityEvalTest, RefusesLengthsPastTheStream) {
  auto model = LlamaModel::Load("dummy:stories260k", {});
  ASSERT_TRUE(model.ok());
  const std::vector<int32_t> stream = {1, 5, 6};
  QualityOptions options;
  options.lengths = {10};
  EXPECT_EQ(EvaluateQuality(**model, stream, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvserve
