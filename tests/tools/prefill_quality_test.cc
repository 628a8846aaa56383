// The prefill quality tool on the real model: a CritiPrefill setting that leaves every segment
// dense is dense prefill (zero divergence, nothing skipped), dense prefill's perplexity is the
// teacher-forced scoring's, and a sparse setting skips attention at a small divergence.
#include "tools/prefill_quality.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/scoring.h"
#include "tests/test_support.h"
#include "tools/story_stream.h"

namespace kvserve {
namespace {

constexpr int64_t kPrompt = 320, kContinuation = 16;

CritiPrefillParams Setting(int64_t kept, int64_t dense_prefix) {
  return {.segment_size = 64,
          .block_size = 8,
          .kept_blocks = kept,
          .dense_prefix_tokens = dense_prefix};
}

TEST(PrefillQualityTest, DenseSettingIsDensePrefillAndSparseOneSkips) {
  KVSERVE_REQUIRE_STORIES260K();
  auto tokenizer = Tokenizer::Load(testing::Stories260kDir());
  ASSERT_TRUE(tokenizer.ok());
  auto window = StoryStream(**tokenizer, testing::SharedDir() + "/data/tinystories/valid.txt", 0,
                            kPrompt + kContinuation);
  ASSERT_TRUE(window.ok()) << window.status();
  auto model = LlamaModel::Load(testing::Stories260kDir(), {});
  ASSERT_TRUE(model.ok());

  PrefillQualityOptions options;
  options.policies = {{CachePolicyKind::kFull, 0, {}}, {CachePolicyKind::kStreamingLlm, 64, {}}};
  options.settings = {Setting(4, 512), Setting(2, 64)};
  options.prompt_tokens = {kPrompt};
  options.continuation_tokens = kContinuation;
  options.prefill_chunk = 128;
  const std::vector<std::vector<int32_t>> windows = {*window};
  auto rows = EvaluatePrefillQuality(**model, windows, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 6u);  // 2 policies × (dense + 2 settings)

  // FULL dense: the scoring's perplexity of tokens kPrompt .. kPrompt + kContinuation - 1.
  auto nll = TokenNll(**model, *window, /*chunk=*/128);
  ASSERT_TRUE(nll.ok());
  double sum = 0;
  for (int64_t i = kPrompt - 1; i < kPrompt + kContinuation - 1; ++i) sum += (*nll)[i];
  EXPECT_NEAR((*rows)[0].perplexity, std::exp(sum / kContinuation), 1e-4);
  for (size_t policy = 0; policy < 2; ++policy) {
    const PrefillQualityRow& dense = (*rows)[3 * policy];
    const PrefillQualityRow& same = (*rows)[3 * policy + 1];
    const PrefillQualityRow& sparse = (*rows)[3 * policy + 2];
    EXPECT_EQ(dense.kept_blocks, 0);
    EXPECT_EQ(dense.mean_kl, 0);
    EXPECT_EQ(same.mean_kl, 0);
    EXPECT_EQ(same.perplexity, dense.perplexity);
    EXPECT_EQ(same.skipped, 0);
    EXPECT_EQ(sparse.kept_blocks, 2);
    EXPECT_GT(sparse.skipped, 0.1);
    EXPECT_GT(sparse.mean_kl, 0);
    EXPECT_LT(sparse.mean_kl, 0.5);
  }
  EXPECT_NE(PrefillQualityMarkdown(*rows).find("| STREAMING_LLM | 64 | 320 | CritiPrefill k=2 |"),
            std::string::npos);
  EXPECT_EQ(PrefillQualityCsv(*rows).rfind("policy,budget,prompt_tokens,kept_blocks", 0), 0u);
}

TEST(PrefillQualityTest, RefusesShortWindowsAndSegmentsPastTheChunk) {
  auto model = LlamaModel::Load("dummy:stories260k", {});
  ASSERT_TRUE(model.ok());
  const std::vector<std::vector<int32_t>> windows = {std::vector<int32_t>(100, 5)};
  PrefillQualityOptions options;
  options.policies = {{CachePolicyKind::kFull, 0, {}}};
  options.prompt_tokens = {96};
  options.continuation_tokens = 8;
  EXPECT_EQ(EvaluatePrefillQuality(**model, windows, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.prompt_tokens = {64};
  options.prefill_chunk = 32;
  options.settings = {Setting(2, 64)};
  EXPECT_EQ(EvaluatePrefillQuality(**model, windows, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvserve
