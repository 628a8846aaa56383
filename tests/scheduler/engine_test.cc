// The engine on the real stories260K model: golden ids through continuous batching, cancellation
// freeing memory, deadlines, a full queue, and the same seed giving the same sample in any batch.
#include "scheduler/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "tests/model/golden.h"
#include "tests/scheduler/stories_engine.h"

namespace kvserve {
namespace {

using namespace std::chrono_literals;

// Collects one request's events; Wait blocks until the final one (bounded).
class Collector {
 public:
  TokenSink Sink() {
    return [this](TokenEvent event) {
      std::lock_guard lock(mutex_);
      tokens_.insert(tokens_.end(), event.token_ids.begin(), event.token_ids.end());
      if (event.finished) final_ = std::move(event);
      changed_.notify_all();
    };
  }
  bool WaitForTokens(size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 30s, [&] { return tokens_.size() >= n || final_; });
  }
  TokenEvent Wait() {
    std::unique_lock lock(mutex_);
    EXPECT_TRUE(changed_.wait_for(lock, 60s, [&] { return final_.has_value(); }));
    return final_.value_or(TokenEvent{});
  }
  std::vector<int32_t> tokens() {
    std::lock_guard lock(mutex_);
    return tokens_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<int32_t> tokens_;
  std::optional<TokenEvent> final_;
};

EngineConfig StoriesConfig() { return testing::StoriesEngineConfig(); }

GenerationRequest Greedy(std::vector<int32_t> prompt, int32_t max_new_tokens) {
  GenerationRequest request;
  request.prompt_ids = std::move(prompt);
  request.sampling.max_new_tokens = max_new_tokens;
  request.sampling.ignore_eos = true;
  return request;
}

TEST(EngineTest, GoldenIdsWithAllCasesInFlightAtOnce) {
  KVSERVE_REQUIRE_STORIES260K();
  auto config = StoriesConfig();
  config.prefill_chunk = 4;  // prompts take several steps, mixed with others' decode tokens
  auto engine = Engine::Create(config);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const auto cases = testing::LoadGoldenCases();
  std::vector<std::unique_ptr<Collector>> collectors;
  for (const auto& c : cases) {
    collectors.push_back(std::make_unique<Collector>());
    ASSERT_TRUE((*engine)->Submit(Greedy(c.prompt_ids, 200), collectors.back()->Sink()).ok());
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    TokenEvent last = collectors[i]->Wait();
    EXPECT_TRUE(last.status.ok()) << last.status;
    EXPECT_EQ(last.finish_reason, FinishReason::kLength);
    EXPECT_EQ(last.usage.completion_tokens, 200);
    EXPECT_EQ(collectors[i]->tokens(), cases[i].greedy_ids) << cases[i].prompt;
  }
  EXPECT_EQ((*engine)->stats().kv_pool_reserved_bytes, 0);
}

TEST(EngineTest, CancellingFreesMemoryForTheNextRequest) {
  KVSERVE_REQUIRE_STORIES260K();
  auto config = StoriesConfig();
  const int64_t bytes_per_token = 2 * 5 * 4 * 8 * 4;
  config.kv_cache_bytes = 300 * bytes_per_token;  // one request of 5 + 200 tokens, not two
  auto engine = Engine::Create(config);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const auto prompt = testing::LoadGoldenCases()[0].prompt_ids;
  Collector first, second;
  auto handle = (*engine)->Submit(Greedy(prompt, 200), first.Sink());
  ASSERT_TRUE(handle.ok());
  ASSERT_TRUE(first.WaitForTokens(3));
  ASSERT_TRUE((*engine)->Submit(Greedy(prompt, 200), second.Sink()).ok());
  EXPECT_EQ((*engine)->stats().waiting, 1);  // no room until the first one leaves
  (*handle)->Cancel();
  TokenEvent cancelled = first.Wait();
  EXPECT_EQ(cancelled.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(cancelled.finish_reason, FinishReason::kCancelled);
  TokenEvent done = second.Wait();
  EXPECT_TRUE(done.status.ok());
  EXPECT_EQ(second.tokens().size(), 200u);
}

TEST(EngineTest, DeadlineEndsOnlyThatRequest) {
  KVSERVE_REQUIRE_STORIES260K();
  auto engine = Engine::Create(StoriesConfig());
  ASSERT_TRUE(engine.ok());
  const auto prompt = testing::LoadGoldenCases()[0].prompt_ids;
  Collector late, fine;
  auto expiring = Greedy(prompt, 300);
  expiring.deadline = std::chrono::steady_clock::now() + 1ms;
  ASSERT_TRUE((*engine)->Submit(std::move(expiring), late.Sink()).ok());
  ASSERT_TRUE((*engine)->Submit(Greedy(prompt, 50), fine.Sink()).ok());
  EXPECT_EQ(late.Wait().status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(fine.Wait().status.ok());
  EXPECT_EQ(fine.tokens().size(), 50u);
}

TEST(EngineTest, RefusesBadRequestsNamingTheField) {
  KVSERVE_REQUIRE_STORIES260K();
  auto engine = Engine::Create(StoriesConfig());
  ASSERT_TRUE(engine.ok());
  auto expect_invalid = [&](GenerationRequest request, const std::string& field) {
    auto result = (*engine)->Submit(std::move(request), [](TokenEvent) { FAIL(); });
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
    EXPECT_NE(result.status().message().find(field), std::string::npos) << result.status();
  };
  expect_invalid(Greedy({}, 5), "prompt");
  expect_invalid(Greedy({1, 512}, 5), "prompt_ids[1]");
  expect_invalid(Greedy({1, 2}, 0), "sampling.max_new_tokens");
  expect_invalid(Greedy(std::vector<int32_t>(500, 5), 100), "sampling.max_new_tokens");
  GenerationRequest small_budget = Greedy({1}, 5);
  small_budget.cache.kind = CachePolicyKind::kTreeKv;
  small_budget.cache.budget_tokens = 4;  // no room for a tree beside 4 sinks
  expect_invalid(std::move(small_budget), "cache.budget_tokens");
}

// Every served compressed policy through the real model: with a budget above the stream it holds
// every token (IN-CACHE policies at their own rank), so greedy ids equal FULL's; under a small
// budget it still finishes.
TEST(EngineTest, CompressedPoliciesRunThroughTheModel) {
  KVSERVE_REQUIRE_STORIES260K();
  auto config = StoriesConfig();
  config.prefill_chunk = 4;
  auto engine = Engine::Create(config);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const auto golden = testing::LoadGoldenCases()[0];
  int served = 0;
  for (const PolicyDescription& policy : (*engine)->model_info().cache_policies) {
    if (!policy.served || policy.kind == CachePolicyKind::kFull) continue;
    ++served;
    for (int64_t budget : {256, 32}) {
      GenerationRequest request = Greedy(golden.prompt_ids, 200);
      request.cache.kind = policy.kind;
      request.cache.budget_tokens = budget;
      Collector collector;
      ASSERT_TRUE((*engine)->Submit(std::move(request), collector.Sink()).ok());
      TokenEvent last = collector.Wait();
      EXPECT_TRUE(last.status.ok()) << last.status;
      EXPECT_EQ(collector.tokens().size(), 200u);
      if (budget == 256) {
        EXPECT_EQ(collector.tokens(), golden.greedy_ids) << CachePolicyName(policy.kind);
      }
    }
  }
  EXPECT_EQ(served, 6);
}

TEST(EngineTest, FullQueueIsRefusedAtOnce) {
  KVSERVE_REQUIRE_STORIES260K();
  auto config = StoriesConfig();
  config.max_queue = 1;
  config.kv_cache_bytes = 300 * 2 * 5 * 4 * 8 * 4;  // one running request at a time
  auto engine = Engine::Create(config);
  ASSERT_TRUE(engine.ok());
  const auto prompt = testing::LoadGoldenCases()[0].prompt_ids;
  Collector running, queued;
  auto handle = (*engine)->Submit(Greedy(prompt, 200), running.Sink());
  ASSERT_TRUE(handle.ok());
  ASSERT_TRUE(running.WaitForTokens(1));
  ASSERT_TRUE((*engine)->Submit(Greedy(prompt, 200), queued.Sink()).ok());
  auto refused = (*engine)->Submit(Greedy(prompt, 200), [](TokenEvent) {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  (*engine)->CancelAll(absl::UnavailableError("test over"));
  EXPECT_EQ(queued.Wait().status.code(), absl::StatusCode::kUnavailable);
}

TEST(EngineTest, SeededSamplingIsTheSameAloneOrBatched) {
  KVSERVE_REQUIRE_STORIES260K();
  auto engine = Engine::Create(StoriesConfig());
  ASSERT_TRUE(engine.ok());
  const auto cases = testing::LoadGoldenCases();
  auto sampled = [&](uint64_t seed) {
    GenerationRequest request = Greedy(cases[1].prompt_ids, 60);
    request.sampling.temperature = 0.9f;
    request.sampling.top_p = 0.95f;
    request.sampling.seed = seed;
    return request;
  };
  Collector alone;
  ASSERT_TRUE((*engine)->Submit(sampled(42), alone.Sink()).ok());
  alone.Wait();
  std::vector<std::unique_ptr<Collector>> crowd;
  for (int i = 0; i < 6; ++i) {
    crowd.push_back(std::make_unique<Collector>());
    auto request = i == 3 ? sampled(42) : sampled(100 + i);
    ASSERT_TRUE((*engine)->Submit(std::move(request), crowd.back()->Sink()).ok());
  }
  for (auto& c : crowd) c->Wait();
  EXPECT_EQ(crowd[3]->tokens(), alone.tokens());
  EXPECT_NE(crowd[2]->tokens(), alone.tokens());
}

// Every served compressed policy, at budgets 32 and 128, streams 300 tokens after a 400-token
// prompt prefilled in chunks of 64, holding at most budget + chunk tokens (SnapKV: see below).
TEST(EngineTest, CompressedPoliciesStayNearTheirBudget) {
  KVSERVE_REQUIRE_STORIES260K();
  auto config = StoriesConfig();
  config.prefill_chunk = 64;
  auto engine = Engine::Create(config);
  ASSERT_TRUE(engine.ok());
  std::vector<int32_t> prompt = {1};
  for (const auto& c : testing::LoadGoldenCases()) {
    prompt.insert(prompt.end(), c.greedy_ids.begin(), c.greedy_ids.end());
  }
  prompt.resize(400);
  int served = 0;
  for (const PolicyDescription& policy : (*engine)->model_info().cache_policies) {
    if (!policy.served || policy.kind == CachePolicyKind::kFull) continue;
    ++served;
    for (int64_t budget : {32, 128}) {
      SCOPED_TRACE(CachePolicyName(policy.kind) + " budget " + std::to_string(budget));
      GenerationRequest request = Greedy(prompt, 300);
      request.cache = {policy.kind, budget, {}};
      Collector collector;
      ASSERT_TRUE((*engine)->Submit(std::move(request), collector.Sink()).ok());
      TokenEvent last = collector.Wait();
      ASSERT_TRUE(last.status.ok()) << last.status;
      EXPECT_EQ(collector.tokens().size(), 300u);
      // SnapKV compresses the prompt once and then grows (policies.md §0.5 item 9): its peak is
      // max(prompt, budget + new tokens), which is what admission reserves for it.
      const int64_t limit = policy.kind == CachePolicyKind::kSnapKv
                                ? std::max<int64_t>(400, budget + 300)
                                : budget + 64;
      EXPECT_LE(last.usage.cache.peak_tokens, limit);
      EXPECT_GT(last.usage.cache.evicted_tokens, 0);
      EXPECT_EQ(last.usage.cache.budget_tokens, budget);
    }
  }
  EXPECT_EQ(served, 6);
  EXPECT_EQ((*engine)->stats().kv_pool_reserved_bytes, 0);
}

}  // namespace
}  // namespace kvserve
