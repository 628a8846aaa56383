// The model against Hugging Face's own outputs for stories260K (golden.json): every greedy id and
// the top-5 logits after the prompt, alone and batched with sequences of other lengths.
#include "model/llama_model.h"

#include <gtest/gtest.h>

#include <iostream>

#include "cache/full_policy.h"
#include "model/scoring.h"
#include "tests/model/golden.h"

namespace kvserve {
namespace {

using testing::GoldenCase;

// float32 on the test device: the CPU, or CUDA on the GPU machine (KVSERVE_TEST_DEVICE=cuda).
std::unique_ptr<LlamaModel> LoadStories(at::ScalarType dtype = at::kFloat) {
  auto model =
      LlamaModel::Load(testing::Stories260kDir(), {dtype, *ParseDevice(testing::TestDevice()), 0});
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

int32_t Argmax(const at::Tensor& row) { return static_cast<int32_t>(row.argmax().item<int64_t>()); }

// One request's state in a hand-driven generation loop.
struct Stream {
  std::vector<int32_t> pending;  // tokens of the next step
  std::vector<int32_t> generated;
  std::unique_ptr<FullPolicy> policy;
  std::unique_ptr<KvCache> cache;
};

Stream StartStream(const LlamaModel& model, const GoldenCase& c) {
  const int64_t capacity = c.prompt_ids.size() + c.greedy_ids.size();
  return {c.prompt_ids,
          {},
          std::make_unique<FullPolicy>(capacity),
          std::make_unique<KvCache>(model.cache_shape(), capacity)};
}

TEST(LlamaModelTest, ReproducesGoldenGreedyIdsAndTopLogits) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories();
  ASSERT_NE(model, nullptr);
  for (const GoldenCase& c : testing::LoadGoldenCases()) {
    SCOPED_TRACE(c.prompt);
    Stream s = StartStream(*model, c);
    while (s.generated.size() < c.greedy_ids.size()) {
      SequenceInput input{s.cache.get(), s.policy.get(), s.pending};
      auto logits = model->Forward({&input, 1}).cpu();
      if (s.generated.empty()) {
        auto [values, ids] = logits[0].topk(5);
        for (int i = 0; i < 5; ++i) {
          EXPECT_EQ(ids[i].item<int64_t>(), c.top5[i].first) << "top-5 rank " << i;
          EXPECT_NEAR(values[i].item<float>(), c.top5[i].second, 1e-3) << "top-5 rank " << i;
        }
      }
      s.generated.push_back(Argmax(logits[0]));
      s.pending = {s.generated.back()};
    }
    EXPECT_EQ(s.generated, c.greedy_ids);
  }
}

// bfloat16 drifts from float32 greedy decoding after a while; report how far each case agrees and
// require the first tokens to.
TEST(LlamaModelTest, Bfloat16LeadingGreedyTokens) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories(at::kBFloat16);
  ASSERT_NE(model, nullptr);
  for (const GoldenCase& c : testing::LoadGoldenCases()) {
    Stream s = StartStream(*model, c);
    while (s.generated.size() < c.greedy_ids.size()) {
      SequenceInput input{s.cache.get(), s.policy.get(), s.pending};
      s.generated.push_back(Argmax(model->Forward({&input, 1}).cpu()[0]));
      s.pending = {s.generated.back()};
    }
    size_t leading = 0;
    while (leading < c.greedy_ids.size() && s.generated[leading] == c.greedy_ids[leading])
      ++leading;
    std::cout << "[bf16 " << testing::TestDevice() << "] \"" << c.prompt << "\": " << leading
              << " of " << c.greedy_ids.size() << " leading greedy tokens match\n";
    RecordProperty("leading_" + std::to_string(c.prompt_ids.size()), static_cast<int>(leading));
    EXPECT_GE(leading, 5u) << c.prompt;
  }
}

// All cases in one batch, started one step apart, so that prefills of different lengths and
// decode tokens share every step: batching must change nothing.
TEST(LlamaModelTest, MixedBatchOfDifferentLengthsGivesTheSameIds) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories();
  ASSERT_NE(model, nullptr);
  const auto cases = testing::LoadGoldenCases();
  std::vector<Stream> streams;
  for (const auto& c : cases) streams.push_back(StartStream(*model, c));
  for (size_t step = 0;; ++step) {
    std::vector<SequenceInput> batch;
    std::vector<size_t> members;
    for (size_t i = 0; i < streams.size() && i <= step; ++i) {
      if (streams[i].generated.size() == cases[i].greedy_ids.size()) continue;
      batch.push_back({streams[i].cache.get(), streams[i].policy.get(), streams[i].pending});
      members.push_back(i);
    }
    if (batch.empty()) break;
    auto logits = model->Forward(batch).cpu();
    for (size_t row = 0; row < members.size(); ++row) {
      Stream& s = streams[members[row]];
      s.generated.push_back(Argmax(logits[row]));
      s.pending = {s.generated.back()};
    }
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(streams[i].generated, cases[i].greedy_ids) << cases[i].prompt;
  }
}

// Scoring: logits for every token of a chunk equal those of feeding the tokens one at a time, and
// chunked prefill equals one-shot prefill.
TEST(LlamaModelTest, ChunkedPrefillMatchesOneShotAndAllLogits) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories();
  ASSERT_NE(model, nullptr);
  const GoldenCase c = testing::LoadGoldenCases()[1];
  std::vector<int32_t> tokens = c.prompt_ids;
  tokens.insert(tokens.end(), c.greedy_ids.begin(), c.greedy_ids.begin() + 40);
  const int64_t n = tokens.size();

  FullPolicy policy(n);
  KvCache one_shot(model->cache_shape(), n);
  SequenceInput all{&one_shot, &policy, tokens, /*all_logits=*/true};
  auto expected = model->Forward({&all, 1}).cpu();
  ASSERT_EQ(expected.size(0), n);

  KvCache chunked(model->cache_shape(), n);
  std::vector<at::Tensor> rows;
  for (int64_t start = 0; start < n; start += 7) {
    std::span<const int32_t> chunk(tokens.data() + start, std::min<int64_t>(7, n - start));
    SequenceInput input{&chunked, &policy, chunk, true};
    rows.push_back(model->Forward({&input, 1}).cpu());
  }
  EXPECT_TRUE(at::allclose(at::cat(rows), expected, 1e-4, 1e-4));
  EXPECT_EQ(chunked.tokens_seen(), n);
  EXPECT_EQ(chunked.length(0), n);
}

}  // namespace
}  // namespace kvserve

namespace kvserve {
namespace {

// Teacher-forced scoring of prompt + greedy continuation reproduces golden's mean NLL of the
// greedy tokens.
TEST(ScoringTest, GreedyMeanNllMatchesGolden) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories();
  ASSERT_NE(model, nullptr);
  for (const GoldenCase& c : testing::LoadGoldenCases()) {
    std::vector<int32_t> ids = c.prompt_ids;
    ids.insert(ids.end(), c.greedy_ids.begin(), c.greedy_ids.end());
    auto nll = TokenNll(*model, ids, /*chunk=*/64);
    ASSERT_TRUE(nll.ok()) << nll.status();
    double sum = 0;
    for (size_t i = c.prompt_ids.size() - 1; i < nll->size(); ++i) sum += (*nll)[i];
    EXPECT_NEAR(sum / c.greedy_ids.size(), c.greedy_mean_nll, 1e-4) << c.prompt;
  }
  EXPECT_FALSE(TokenNll(*model, std::vector<int32_t>{1}).ok());
}

}  // namespace
}  // namespace kvserve
