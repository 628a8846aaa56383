// The policies driven by the real model (stories260K, GQA 8/4 heads, 5 layers) through
// LlamaModel::Forward, chunked prefill then greedy decode: budgets hold, and a budget above the
// sequence reproduces FULL's logits.
#include <gtest/gtest.h>

#include "cache/full_policy.h"
#include "cache/policy_factory.h"
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

}  // namespace
}  // namespace kvserve
