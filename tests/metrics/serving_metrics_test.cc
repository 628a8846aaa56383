#include "metrics/serving_metrics.h"

#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "tests/metrics/exposition.h"

namespace kvserve {
namespace {

using testing::SampleValue;

class ServingMetricsTest : public ::testing::Test {
 protected:
  double Value(const std::string& name, testing::LabelSet labels = {}) {
    labels.emplace("model_name", "m");  // (operator= trips GCC 12 -Wrestrict)
    auto value = SampleValue(metrics_.Exposition(), name, labels);
    EXPECT_TRUE(value.has_value()) << name << " not exposed";
    return value.value_or(-1);
  }
  ServingMetrics metrics_{{"m", {"FULL", "H2O"}}};
};

// Every family of METRICS.md, with its type.
TEST_F(ServingMetricsTest, ExposesEveryFamilyOfMetricsMd) {
  const std::string text = metrics_.Exposition();
  const std::pair<const char*, const char*> families[] = {
      {"kvserve_num_requests_running", "gauge"},
      {"kvserve_num_requests_waiting", "gauge"},
      {"kvserve_kv_cache_usage_perc", "gauge"},
      {"kvserve_prompt_tokens_total", "counter"},
      {"kvserve_generation_tokens_total", "counter"},
      {"kvserve_request_success_total", "counter"},
      {"kvserve_request_failure_total", "counter"},
      {"kvserve_time_to_first_token_seconds", "histogram"},
      {"kvserve_inter_token_latency_seconds", "histogram"},
      {"kvserve_request_time_per_output_token_seconds", "histogram"},
      {"kvserve_e2e_request_latency_seconds", "histogram"},
      {"kvserve_request_queue_time_seconds", "histogram"},
      {"kvserve_request_prefill_time_seconds", "histogram"},
      {"kvserve_request_decode_time_seconds", "histogram"},
      {"kvserve_request_prompt_tokens", "histogram"},
      {"kvserve_request_generation_tokens", "histogram"},
      {"kvserve_num_preemptions_total", "counter"},
      {"kvserve_engine_step_seconds", "histogram"},
      {"kvserve_engine_batch_size", "histogram"},
      {"kvserve_engine_step_tokens", "histogram"},
      {"kvserve_kv_pool_bytes", "gauge"},
      {"kvserve_requests_by_policy_total", "counter"},
      {"kvserve_cache_evicted_tokens_total", "counter"},
      {"kvserve_cache_compression_events_total", "counter"},
      {"kvserve_cache_compression_ratio", "histogram"},
      {"kvserve_cache_policy_update_seconds", "histogram"},
      {"kvserve_prefill_attention_skipped_ratio", "histogram"},
  };
  for (const auto& [name, type] : families) {
    std::ostringstream type_line;
    type_line << "# TYPE " << name << " " << type << "\n";
    EXPECT_NE(text.find(type_line.str()), std::string::npos) << name;
  }
}

TEST_F(ServingMetricsTest, KnownLabelValuesStartAtZero) {
  EXPECT_EQ(Value("kvserve_request_success_total", {{"finished_reason", "eos"}}), 0);
  EXPECT_EQ(Value("kvserve_request_failure_total", {{"code", "DEADLINE_EXCEEDED"}}), 0);
  EXPECT_EQ(Value("kvserve_requests_by_policy_total", {{"policy", "H2O"}}), 0);
  EXPECT_EQ(Value("kvserve_time_to_first_token_seconds_count", {{"policy", "FULL"}}), 0);
  EXPECT_EQ(Value("kvserve_engine_step_seconds_count", {{"phase", "mixed"}}), 0);
  EXPECT_EQ(Value("kvserve_kv_pool_bytes", {{"state", "free"}}), 0);
  metrics_.DeclarePolicy("TREEKV");
  EXPECT_EQ(Value("kvserve_cache_evicted_tokens_total", {{"policy", "TREEKV"}}), 0);
}

TEST_F(ServingMetricsTest, RequestLifecycle) {
  metrics_.OnRequestAdmitted("H2O", 0.002);
  metrics_.OnFirstToken("H2O", 0.05, 0.048);
  metrics_.OnNextToken("H2O", 0.003);
  metrics_.OnNextToken("H2O", 0.004);
  FinishedRequest r;
  r.policy = "H2O";
  r.finished_reason = "length";
  r.prompt_tokens = 7;
  r.generation_tokens = 3;
  r.e2e_seconds = 0.07;
  r.time_to_first_token = 0.05;
  r.decode_seconds = 0.02;
  r.cache_tokens_seen = 9;
  r.cache_peak_tokens = 4;
  r.cache_evicted_tokens = 5;
  r.cache_compression_events = 2;
  metrics_.OnRequestFinished(r);

  EXPECT_EQ(Value("kvserve_requests_by_policy_total", {{"policy", "H2O"}}), 1);
  EXPECT_EQ(Value("kvserve_request_queue_time_seconds_count"), 1);
  EXPECT_EQ(Value("kvserve_generation_tokens_total"), 3);
  EXPECT_EQ(Value("kvserve_time_to_first_token_seconds_count", {{"policy", "H2O"}}), 1);
  EXPECT_DOUBLE_EQ(Value("kvserve_time_to_first_token_seconds_sum", {{"policy", "H2O"}}), 0.05);
  EXPECT_EQ(Value("kvserve_time_to_first_token_seconds_count", {{"policy", "FULL"}}), 0);
  EXPECT_EQ(Value("kvserve_inter_token_latency_seconds_count", {{"policy", "H2O"}}), 2);
  EXPECT_EQ(Value("kvserve_request_success_total", {{"finished_reason", "length"}}), 1);
  EXPECT_EQ(Value("kvserve_e2e_request_latency_seconds_count"), 1);
  EXPECT_EQ(Value("kvserve_request_prefill_time_seconds_count"), 1);
  EXPECT_EQ(Value("kvserve_request_decode_time_seconds_count"), 1);
  EXPECT_DOUBLE_EQ(Value("kvserve_request_time_per_output_token_seconds_sum"), (0.07 - 0.05) / 2);
  EXPECT_EQ(Value("kvserve_request_prompt_tokens_sum"), 7);
  EXPECT_EQ(Value("kvserve_request_generation_tokens_sum"), 3);
  EXPECT_EQ(Value("kvserve_cache_evicted_tokens_total", {{"policy", "H2O"}}), 5);
  EXPECT_EQ(Value("kvserve_cache_compression_events_total", {{"policy", "H2O"}}), 2);
  EXPECT_DOUBLE_EQ(Value("kvserve_cache_compression_ratio_sum", {{"policy", "H2O"}}), 9.0 / 4);
}

// A failed request counts its code and its cache work, not the latency of served requests.
TEST_F(ServingMetricsTest, FailuresAreCountedByCode) {
  FinishedRequest r;
  r.policy = "FULL";
  r.code = absl::StatusCode::kCancelled;
  r.generation_tokens = 1;
  r.e2e_seconds = 1;
  metrics_.OnRequestFinished(r);
  metrics_.OnRequestRejected(absl::StatusCode::kInvalidArgument);
  metrics_.OnRequestRejected(absl::StatusCode::kOk);  // ignored
  EXPECT_EQ(Value("kvserve_request_failure_total", {{"code", "CANCELLED"}}), 1);
  EXPECT_EQ(Value("kvserve_request_failure_total", {{"code", "INVALID_ARGUMENT"}}), 1);
  EXPECT_EQ(Value("kvserve_e2e_request_latency_seconds_count"), 0);
  EXPECT_FALSE(SampleValue(metrics_.Exposition(), "kvserve_request_failure_total",
                           {{"model_name", "m"}, {"code", "OK"}}));
}

TEST_F(ServingMetricsTest, StepsQueueAndPool) {
  metrics_.OnStep({0.004, 3, 10, 2});
  metrics_.OnStep({0.001, 3, 0, 3});
  metrics_.OnPolicyUpdate("FULL", 0.0002);
  metrics_.SetQueue(3, 5);
  metrics_.SetKvPool(256, 1024);
  metrics_.OnPreemption();
  EXPECT_EQ(Value("kvserve_engine_step_seconds_count", {{"phase", "mixed"}}), 1);
  EXPECT_EQ(Value("kvserve_engine_step_seconds_count", {{"phase", "decode"}}), 1);
  EXPECT_EQ(Value("kvserve_engine_batch_size_sum"), 6);
  EXPECT_EQ(Value("kvserve_engine_step_tokens_sum"), 15);
  EXPECT_EQ(Value("kvserve_prompt_tokens_total"), 10);
  EXPECT_EQ(Value("kvserve_cache_policy_update_seconds_count", {{"policy", "FULL"}}), 1);
  EXPECT_EQ(Value("kvserve_num_requests_running"), 3);
  EXPECT_EQ(Value("kvserve_num_requests_waiting"), 5);
  EXPECT_EQ(Value("kvserve_kv_pool_bytes", {{"state", "reserved"}}), 256);
  EXPECT_EQ(Value("kvserve_kv_pool_bytes", {{"state", "free"}}), 768);
  EXPECT_DOUBLE_EQ(Value("kvserve_kv_cache_usage_perc"), 0.25);
  EXPECT_EQ(Value("kvserve_num_preemptions_total"), 1);
}

// A 3 ms step falls in the 3.2 ms bucket of 0.1 ms × 2^k, not in 1.6 ms.
TEST_F(ServingMetricsTest, BucketsFollowMetricsMd) {
  EXPECT_EQ(ServingMetrics::TimeToFirstTokenBuckets().size(), 22u);
  EXPECT_EQ(ServingMetrics::TimeToFirstTokenBuckets().back(), 2560);
  EXPECT_EQ(ServingMetrics::InterTokenBuckets().front(), 0.0005);
  EXPECT_EQ(ServingMetrics::InterTokenBuckets().size(), 24u);
  EXPECT_EQ(ServingMetrics::RequestPhaseBuckets().size(), 26u);
  const auto step = ServingMetrics::StepBuckets();
  ASSERT_EQ(step.size(), 17u);
  EXPECT_DOUBLE_EQ(step.front(), 0.0001);
  EXPECT_DOUBLE_EQ(step.back(), 6.5536);
  metrics_.OnStep({0.003, 1, 0, 1});
  const std::string text = metrics_.Exposition();
  const testing::LabelSet labels = {{"model_name", "m"}, {"phase", "decode"}};
  auto bucket = [&](const char* le) {
    auto l = labels;
    l.emplace("le", le);
    return SampleValue(text, "kvserve_engine_step_seconds_bucket", l);
  };
  EXPECT_EQ(bucket("0.0016"), 0);
  EXPECT_EQ(bucket("0.0032"), 1);
  EXPECT_EQ(bucket("+Inf"), 1);
}

TEST_F(ServingMetricsTest, ConcurrentUpdatesAreAllCounted) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        metrics_.OnNextToken(t % 2 ? "FULL" : "SNAPKV", 0.001);
        if (i % 100 == 0) metrics_.Exposition();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Value("kvserve_generation_tokens_total"), 4000);
  EXPECT_EQ(Value("kvserve_inter_token_latency_seconds_count", {{"policy", "SNAPKV"}}), 2000);
}

}  // namespace
}  // namespace kvserve
