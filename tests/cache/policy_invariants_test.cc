// Invariants every served compressed policy keeps, on a real model shape with random tokens,
// prefilled in chunks then decoded: never more than the budget after a step, sinks kept, the newest
// token kept, and, when the budget exceeds the sequence, exactly the logits of FULL.
#include <gtest/gtest.h>

#include <random>

#include "cache/policy_factory.h"
#include "model/llama_model.h"

namespace kvserve {
namespace {

constexpr int64_t kChunk = 8;

struct PolicyRun {
  std::vector<at::Tensor> logits;  // per step
  bool kept_budget = true, kept_newest = true, kept_sinks = true;
};

// Prefills `prompt` tokens of `stream` in chunks, then decodes the rest one token per step.
PolicyRun Drive(LlamaModel& model, const CacheSpec& spec, const std::vector<int32_t>& stream,
                int64_t prompt, int64_t sinks) {
  const int64_t total = static_cast<int64_t>(stream.size());
  auto policy = MakeCachePolicy(spec, {prompt, total - prompt});
  EXPECT_TRUE(policy.ok()) << policy.status();
  if (!policy.ok()) return {};
  KvCache cache(model.cache_shape(), (*policy)->Capacity(kChunk));
  const bool grows_after_prompt = spec.kind == CachePolicyKind::kSnapKv;
  PolicyRun run;
  for (int64_t done = 0; done < total;) {
    int64_t n = done < prompt ? std::min(kChunk, prompt - done) : 1;
    n = std::min(n, (*policy)->MaxStepTokens(cache, n));
    SequenceInput input{&cache, policy->get(), std::span(stream).subspan(done, n)};
    run.logits.push_back(model.Forward({&input, 1}).cpu());
    done += n;
    const int64_t limit =
        spec.kind == CachePolicyKind::kFull
            ? total
            : spec.budget_tokens + (grows_after_prompt && done > prompt ? done - prompt : 0);
    for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
      if (cache.length(layer) > limit && (!grows_after_prompt || done >= prompt)) {
        run.kept_budget = false;
      }
      auto positions = cache.positions(layer);
      if (!(positions == done - 1).any(1).all().item<bool>()) run.kept_newest = false;
      for (int64_t s = 0; s < std::min(sinks, done); ++s) {
        if (!(positions == s).any(1).all().item<bool>()) run.kept_sinks = false;
      }
    }
  }
  return run;
}

class PolicyInvariants : public ::testing::TestWithParam<CachePolicyKind> {
 protected:
  void SetUp() override {
    bool served = false;
    for (const auto& d : DescribeCachePolicies()) served |= d.kind == GetParam() && d.served;
    if (!served) GTEST_SKIP() << CachePolicyName(GetParam()) << " is not served";
    model_ = std::move(*LlamaModel::Load("dummy:stories260k", {}));
    std::mt19937 rng(11);
    for (int i = 0; i < 150; ++i) stream_.push_back(static_cast<int32_t>(rng() % 512));
  }
  // Sink tokens of the policy's default split, if it has sinks.
  int64_t Sinks() const {
    switch (GetParam()) {
      case CachePolicyKind::kStreamingLlm:
      case CachePolicyKind::kCascading:
      case CachePolicyKind::kTreeKv:
      case CachePolicyKind::kFreqKv:
        return 4;
      default:
        return 0;
    }
  }
  std::unique_ptr<LlamaModel> model_;
  std::vector<int32_t> stream_;
};

TEST_P(PolicyInvariants, StaysWithinBudgetAndKeepsSinksAndNewest) {
  for (int64_t budget : {32, 64}) {
    for (int64_t prompt : {1, 40, 100}) {
      SCOPED_TRACE(testing::Message() << "budget " << budget << " prompt " << prompt);
      PolicyRun run = Drive(*model_, {GetParam(), budget, {}}, stream_, prompt, Sinks());
      EXPECT_TRUE(run.kept_budget);
      EXPECT_TRUE(run.kept_sinks);
      EXPECT_TRUE(run.kept_newest);
    }
  }
}

TEST_P(PolicyInvariants, IdenticalToFullWhenTheBudgetExceedsTheSequence) {
  const int64_t prompt = 40;
  PolicyRun full = Drive(*model_, {CachePolicyKind::kFull, 0, {}}, stream_, prompt, 0);
  PolicyRun policy = Drive(*model_, {GetParam(), 256, {}}, stream_, prompt, 0);
  ASSERT_EQ(full.logits.size(), policy.logits.size());
  for (size_t step = 0; step < full.logits.size(); ++step) {
    ASSERT_TRUE(at::allclose(policy.logits[step], full.logits[step], 1e-5, 1e-5))
        << "step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(Served, PolicyInvariants,
                         ::testing::Values(CachePolicyKind::kStreamingLlm, CachePolicyKind::kH2o,
                                           CachePolicyKind::kSnapKv, CachePolicyKind::kCascading,
                                           CachePolicyKind::kTreeKv, CachePolicyKind::kFreqKv),
                         [](const auto& info) { return CachePolicyName(info.param); });

}  // namespace
}  // namespace kvserve
