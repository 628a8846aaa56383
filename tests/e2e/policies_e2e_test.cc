// Every cache policy through the real server: at budgets 32 and 128 a 400-token prompt, prefilled
// in chunks of 64, then 300 streamed tokens, with the usage the issue promises: at most budget +
// chunk tokens held (SnapKV: max(prompt, budget + new tokens), the reservation of policies.md §0.5
// item 9).
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/e2e/client.h"
#include "tests/e2e/server_process.h"
#include "tests/model/golden.h"

namespace kvserve::testing {
namespace {

TEST(PoliciesE2eTest, EveryPolicyStreamsWithinItsBudget) {
  KVSERVE_REQUIRE_STORIES260K();
  ServerProcess server({"--prefill-chunk=64"});
  ASSERT_TRUE(server.started()) << server.log();
  auto stub = NewGenerationStub(server.address());
  std::vector<int32_t> prompt = {1};
  for (const auto& c : LoadGoldenCases()) {
    prompt.insert(prompt.end(), c.greedy_ids.begin(), c.greedy_ids.end());
  }
  prompt.resize(400);
  for (auto policy :
       {v1::CacheConfig::STREAMING_LLM, v1::CacheConfig::H2O, v1::CacheConfig::SNAPKV,
        v1::CacheConfig::CASCADING, v1::CacheConfig::TREEKV, v1::CacheConfig::FREQKV}) {
    for (int64_t budget : {32, 128}) {
      SCOPED_TRACE(v1::CacheConfig::CachePolicy_Name(policy) + " " + std::to_string(budget));
      v1::GenerateRequest request = GreedyRequest(prompt, 300);
      request.mutable_cache()->set_policy(policy);
      request.mutable_cache()->set_budget_tokens(budget);
      const StreamResult r = Generate(*stub, request, std::chrono::seconds(60));
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.token_ids.size(), 300u);
      EXPECT_EQ(r.usage.completion_tokens(), 300);
      const auto& cache = r.usage.cache();
      EXPECT_EQ(cache.policy(), policy);
      EXPECT_EQ(cache.budget_tokens(), budget);
      const int64_t limit =
          policy == v1::CacheConfig::SNAPKV ? std::max<int64_t>(400, budget + 300) : budget + 64;
      EXPECT_LE(cache.peak_tokens(), limit);
      EXPECT_GT(cache.evicted_tokens(), 0);
    }
  }
}

}  // namespace
}  // namespace kvserve::testing
