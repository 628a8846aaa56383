// The engine's metrics on the real stories260K model: after known traffic, the counters and
// histograms of METRICS.md hold exactly what was sent.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "cache/cache_spec.h"
#include "metrics/serving_metrics.h"
#include "scheduler/engine.h"
#include "tests/metrics/exposition.h"
#include "tests/model/golden.h"
#include "tests/scheduler/stories_engine.h"

namespace kvserve {
namespace {

using namespace std::chrono_literals;

class EngineMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    EngineConfig config = testing::StoriesEngineConfig();
    config.prefill_chunk = 4;  // prompts take several (mixed) steps
    config.metrics = &metrics_;
    auto engine = Engine::Create(config);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  // Submits and returns the future of the final event.
  std::future<TokenEvent> Submit(std::vector<int32_t> prompt, int32_t max_new_tokens,
                                 std::shared_ptr<RequestHandle>* handle = nullptr) {
    GenerationRequest request;
    request.prompt_ids = std::move(prompt);
    request.sampling.max_new_tokens = max_new_tokens;
    request.sampling.ignore_eos = true;
    auto done = std::make_shared<std::promise<TokenEvent>>();
    auto future = done->get_future();
    auto submitted = engine_->Submit(std::move(request), [done](TokenEvent event) {
      if (event.finished) done->set_value(std::move(event));
    });
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    if (handle && submitted.ok()) *handle = *submitted;
    return future;
  }

  double Value(const std::string& name, testing::LabelSet labels = {}) {
    labels.emplace("model_name", "stories260K");
    auto value = testing::SampleValue(metrics_.Exposition(), name, labels);
    EXPECT_TRUE(value.has_value()) << name;
    return value.value_or(-1);
  }

  // The engine updates its gauges after the sinks had the final events; wait for that (bounded).
  void WaitForIdleGauges() {
    for (int i = 0; i < 500 && Value("kvserve_num_requests_running") != 0; ++i) {
      std::this_thread::sleep_for(10ms);
    }
  }

  ServingMetrics metrics_{{"stories260K", {"FULL"}}};
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineMetricsTest, CountsMatchTheTrafficSent) {
  const auto cases = testing::LoadGoldenCases();
  constexpr int kRequests = 3;
  constexpr int kTokens = 6;
  int64_t prompt_tokens = 0;
  std::vector<std::future<TokenEvent>> finals;
  for (int i = 0; i < kRequests; ++i) {
    const auto& prompt = cases[i % cases.size()].prompt_ids;
    prompt_tokens += static_cast<int64_t>(prompt.size());
    finals.push_back(Submit(prompt, kTokens));
  }
  for (auto& f : finals) {
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready);
    EXPECT_TRUE(f.get().status.ok());
  }
  WaitForIdleGauges();

  const testing::LabelSet full = {{"policy", "FULL"}};
  EXPECT_EQ(Value("kvserve_request_success_total", {{"finished_reason", "length"}}), kRequests);
  EXPECT_EQ(Value("kvserve_requests_by_policy_total", full), kRequests);
  EXPECT_EQ(Value("kvserve_prompt_tokens_total"), prompt_tokens);
  EXPECT_EQ(Value("kvserve_generation_tokens_total"), kRequests * kTokens);
  EXPECT_EQ(Value("kvserve_time_to_first_token_seconds_count", full), kRequests);
  EXPECT_GT(Value("kvserve_time_to_first_token_seconds_sum", full), 0);
  EXPECT_EQ(Value("kvserve_inter_token_latency_seconds_count", full), kRequests * (kTokens - 1));
  for (const char* name :
       {"kvserve_e2e_request_latency_seconds_count", "kvserve_request_queue_time_seconds_count",
        "kvserve_request_prefill_time_seconds_count", "kvserve_request_decode_time_seconds_count",
        "kvserve_request_time_per_output_token_seconds_count",
        "kvserve_request_prompt_tokens_count", "kvserve_request_generation_tokens_count"}) {
    EXPECT_EQ(Value(name), kRequests) << name;
  }
  EXPECT_EQ(Value("kvserve_request_prompt_tokens_sum"), prompt_tokens);
  EXPECT_EQ(Value("kvserve_cache_compression_ratio_count", full), kRequests);
  EXPECT_EQ(Value("kvserve_cache_evicted_tokens_total", full), 0);

  // Every step is counted once, and its tokens add up to what was prefilled and decoded.
  const double steps = Value("kvserve_engine_step_seconds_count", {{"phase", "mixed"}}) +
                       Value("kvserve_engine_step_seconds_count", {{"phase", "decode"}});
  EXPECT_GE(steps, kTokens);
  EXPECT_EQ(Value("kvserve_engine_batch_size_count"), steps);
  EXPECT_EQ(Value("kvserve_engine_step_tokens_sum"), prompt_tokens + kRequests * (kTokens - 1));
  EXPECT_EQ(Value("kvserve_cache_policy_update_seconds_count", full), steps);
  EXPECT_GT(Value("kvserve_cache_policy_update_seconds_sum", full), 0);

  EXPECT_EQ(Value("kvserve_num_requests_running"), 0);
  EXPECT_EQ(Value("kvserve_num_requests_waiting"), 0);
  EXPECT_EQ(Value("kvserve_kv_cache_usage_perc"), 0);
  EXPECT_EQ(Value("kvserve_kv_pool_bytes", {{"state", "free"}}), 64 << 20);
}

// A compressed policy's evictions and compression ratio are those of the request's own usage.
TEST_F(EngineMetricsTest, CacheCountersFollowTheRequestsUsage) {
  std::vector<int32_t> prompt = {1};
  for (const auto& c : testing::LoadGoldenCases()) {
    prompt.insert(prompt.end(), c.greedy_ids.begin(), c.greedy_ids.end());
  }
  prompt.resize(200);
  int served = 0;
  for (const PolicyDescription& policy : engine_->model_info().cache_policies) {
    if (!policy.served || policy.kind == CachePolicyKind::kFull) continue;
    const std::string name = CachePolicyName(policy.kind);
    SCOPED_TRACE(name);
    ++served;
    GenerationRequest request;
    request.prompt_ids = prompt;
    request.sampling.max_new_tokens = 40;
    request.sampling.ignore_eos = true;
    request.cache = {policy.kind, 32, {}};
    std::promise<TokenEvent> done;
    ASSERT_TRUE(engine_
                    ->Submit(std::move(request),
                             [&](TokenEvent e) {
                               if (e.finished) done.set_value(std::move(e));
                             })
                    .ok());
    auto future = done.get_future();
    ASSERT_EQ(future.wait_for(60s), std::future_status::ready);
    const TokenEvent last = future.get();
    ASSERT_TRUE(last.status.ok()) << last.status;
    const testing::LabelSet label = {{"policy", name}};
    EXPECT_EQ(Value("kvserve_cache_evicted_tokens_total", label), last.usage.cache.evicted_tokens);
    EXPECT_GT(last.usage.cache.evicted_tokens, 0);
    EXPECT_EQ(Value("kvserve_cache_compression_events_total", label),
              last.usage.cache.compression_events);
    // Tokens seen: the prompt and every generated token but the last, which no step fed back.
    EXPECT_DOUBLE_EQ(Value("kvserve_cache_compression_ratio_sum", label),
                     (200.0 + 39) / last.usage.cache.peak_tokens);
    EXPECT_GT(Value("kvserve_cache_policy_update_seconds_count", label), 0);
  }
  EXPECT_GT(served, 0) << "no compressed policy is served";
}

TEST_F(EngineMetricsTest, CancelledRequestsAreFailuresByCode) {
  std::shared_ptr<RequestHandle> handle;
  auto cancelled = Submit(testing::LoadGoldenCases()[0].prompt_ids, 500, &handle);
  handle->Cancel();
  ASSERT_EQ(cancelled.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(cancelled.get().status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Value("kvserve_request_failure_total", {{"code", "CANCELLED"}}), 1);
  EXPECT_EQ(Value("kvserve_e2e_request_latency_seconds_count"), 0);
  double success = 0;
  for (const char* reason : {"length", "stop", "eos"}) {
    success += Value("kvserve_request_success_total", {{"finished_reason", reason}});
  }
  EXPECT_EQ(success, 0);
}

}  // namespace
}  // namespace kvserve
