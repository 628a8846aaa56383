// The policies driven by the real model (stories260K, GQA 8/4 heads, 5 layers) through
// LlamaModel::Forward, chunked prefill then greedy decode: budgets hold, a budget above the
// sequence reproduces FULL's logits, and StreamingLLM's shifted sinks give the logits of keys
// turned by their in-cache ranks.
#include <gtest/gtest.h>

#include "cache/full_policy.h"
#include "cache/policy_factory.h"
#include "cache/streaming_llm_policy.h"
#include "model/llama_model.h"
#include "tests/test_support.h"

namespace kvserve {
namespace {

struct Generation {
  std::vector<at::Tensor> logits;  // one row per step that ends the prompt or decodes
  std::vector<int64_t> lengths;    // layer 0's length after each step
};

Generation Generate(LlamaModel& model, CachePolicy& policy, const std::vector<int32_t>& prompt,
                    int64_t chunk, int64_t new_tokens) {
  KvCache cache(model.cache_shape(), policy.Capacity(chunk));
  Generation run;
  std::vector<int32_t> pending;
  for (size_t done = 0; done < prompt.size() + new_tokens - 1;) {
    std::span<const int32_t> tokens;
    if (done < prompt.size()) {
      tokens = std::span<const int32_t>(prompt).subspan(
          done, std::min<size_t>(chunk, prompt.size() - done));
    } else {
      tokens = pending;
    }
    SequenceInput input{&cache, &policy, tokens};
    auto logits = model.Forward({&input, 1}).cpu();
    done += tokens.size();
    run.lengths.push_back(cache.length(0));
    if (done < prompt.size()) continue;
    run.logits.push_back(logits[0]);
    pending = {static_cast<int32_t>(logits[0].argmax().item<int64_t>())};
  }
  return run;
}

std::vector<int32_t> Prompt() {
  std::vector<int32_t> prompt = {1};
  for (int32_t i = 0; i < 39; ++i) prompt.push_back(20 + (i * 37) % 400);
  return prompt;
}

std::unique_ptr<LlamaModel> LoadStories() {
  auto model = LlamaModel::Load(testing::Stories260kDir(),
                                {at::kFloat, *ParseDevice(testing::TestDevice()), 0});
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

TEST(PoliciesWithModelTest, BudgetsHoldThroughPrefillAndDecode) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories();
  ASSERT_NE(model, nullptr);
  const auto prompt = Prompt();
  for (auto kind :
       {CachePolicyKind::kStreamingLlm, CachePolicyKind::kH2o, CachePolicyKind::kSnapKv}) {
    for (int64_t chunk : {1, 7, 64}) {
      SCOPED_TRACE(CachePolicyName(kind) + " chunk " + std::to_string(chunk));
      auto policy = MakeCachePolicy({kind, 16, {}}, {40, 10});
      ASSERT_TRUE(policy.ok()) << policy.status();
      Generation run = Generate(*model, **policy, prompt, chunk, 10);
      ASSERT_EQ(run.logits.size(), 10u);
      for (const auto& row : run.logits) EXPECT_TRUE(at::isfinite(row).all().item<bool>());
      for (size_t step = 0; step < run.lengths.size(); ++step) {
        if (kind == CachePolicyKind::kSnapKv) {
          const int64_t after_prompt = static_cast<int64_t>(step) - (run.lengths.size() - 10);
          if (after_prompt >= 0) {
            EXPECT_EQ(run.lengths[step], 16 + after_prompt);
          }
        } else {
          EXPECT_LE(run.lengths[step], 16);
        }
      }
    }
  }
}

TEST(PoliciesWithModelTest, LargeBudgetsReproduceFull) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories();
  ASSERT_NE(model, nullptr);
  const auto prompt = Prompt();
  FullPolicy full(50);
  Generation expected = Generate(*model, full, prompt, 7, 10);
  for (auto kind :
       {CachePolicyKind::kStreamingLlm, CachePolicyKind::kH2o, CachePolicyKind::kSnapKv}) {
    SCOPED_TRACE(CachePolicyName(kind));
    auto policy = MakeCachePolicy({kind, 64, {}}, {40, 10});
    ASSERT_TRUE(policy.ok()) << policy.status();
    Generation run = Generate(*model, **policy, prompt, 7, 10);
    ASSERT_EQ(run.logits.size(), expected.logits.size());
    for (size_t i = 0; i < run.logits.size(); ++i) {
      EXPECT_TRUE(at::allclose(run.logits[i], expected.logits[i], 1e-4, 1e-4)) << "step " << i;
    }
  }
}

// StreamingLLM kept the direct way policies.md §4.1 describes: keys stored un-rotated and turned
// by their in-cache ranks every step (PositionMode::kInCache), with the same evictions.
class RankRotatedStreamingLlm final : public CachePolicy {
 public:
  explicit RankRotatedStreamingLlm(const StreamingLlmPolicy::Params& params) : inner_(params) {}
  PositionMode position_mode() const override { return PositionMode::kInCache; }
  int64_t Capacity(int64_t max_step_tokens) const override {
    return inner_.Capacity(max_step_tokens);
  }
  void Update(KvCache& cache, const LayerStep& step) override { inner_.Update(cache, step); }
  RingLayout ring_layout(int64_t layer) const override { return inner_.ring_layout(layer); }
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override {
    return inner_.PlanBatchedDecode(cache);
  }
  void CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) override {
    inner_.CommitBatchedDecode(cache, step);
  }

 private:
  StreamingLlmPolicy inner_;
};

// Logits of every step after the prompt: the prompt in chunks, then `decoded` one at a time.
std::vector<at::Tensor> TeacherForced(LlamaModel& model, CachePolicy& policy,
                                      const std::vector<int32_t>& prompt,
                                      const std::vector<int32_t>& decoded, int64_t chunk) {
  KvCache cache(model.cache_shape(), policy.Capacity(chunk));
  std::vector<at::Tensor> logits;
  auto step = [&](std::span<const int32_t> tokens) {
    SequenceInput input{&cache, &policy, tokens};
    return model.Forward({&input, 1}).cpu()[0];
  };
  for (size_t done = 0; done < prompt.size(); done += chunk) {
    auto row = step(std::span<const int32_t>(prompt).subspan(
        done, std::min<size_t>(chunk, prompt.size() - done)));
    if (done + chunk >= prompt.size()) logits.push_back(row);
  }
  for (int32_t token : decoded) logits.push_back(step({&token, 1}));
  return logits;
}

TEST(PoliciesWithModelTest, StreamingLlmShiftedSinksMatchKeysTurnedByRank) {
  KVSERVE_REQUIRE_STORIES260K();
  auto model = LoadStories();
  ASSERT_NE(model, nullptr);
  const auto prompt = Prompt();  // 40 tokens against a budget of 16: the window has moved
  std::vector<int32_t> decoded;
  for (int32_t i = 0; i < 12; ++i) decoded.push_back(30 + (i * 53) % 450);
  const StreamingLlmPolicy::Params params{4, 12};
  for (int64_t chunk : {1, 7, 64}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    StreamingLlmPolicy shifted(params);
    RankRotatedStreamingLlm by_rank(params);
    ASSERT_EQ(shifted.position_mode(), PositionMode::kShiftedSinks);
    auto got = TeacherForced(*model, shifted, prompt, decoded, chunk);
    auto want = TeacherForced(*model, by_rank, prompt, decoded, chunk);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(at::allclose(got[i], want[i], 1e-4, 1e-4))
          << "step " << i << ": max difference " << (got[i] - want[i]).abs().max().item<float>();
    }
  }
}

}  // namespace
}  // namespace kvserve
