#include "metrics/serving_metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>

namespace kvserve {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

// Codes a request can end with; their failure series exist from the start so that error-rate
// ratios are 0, not empty, before the first failure.
constexpr absl::StatusCode kFailureCodes[] = {
    absl::StatusCode::kCancelled,       absl::StatusCode::kDeadlineExceeded,
    absl::StatusCode::kInvalidArgument, absl::StatusCode::kResourceExhausted,
    absl::StatusCode::kUnavailable,     absl::StatusCode::kInternal,
    absl::StatusCode::kUnimplemented,   absl::StatusCode::kUnauthenticated,
};
constexpr const char* kFinishedReasons[] = {"length", "stop", "eos"};

// 1, 2, 5, 10, 20, 50, ... up to `max` (vLLM's build_1_2_5_buckets).
std::vector<double> OneTwoFive(double max) {
  std::vector<double> buckets;
  for (double decade = 1;; decade *= 10) {
    for (double m : {1, 2, 5}) {
      if (m * decade > max) return buckets;
      buckets.push_back(m * decade);
    }
  }
}

// Non-negative, finite observations only: a clock glitch must not corrupt a histogram's sum.
double Clamp(double seconds) { return std::isfinite(seconds) && seconds > 0 ? seconds : 0.0; }

}  // namespace

std::vector<double> ServingMetrics::TimeToFirstTokenBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
          1,     2.5,   5,    7.5,  10,   20,   40,   80,  160,  640, 2560};
}

std::vector<double> ServingMetrics::InterTokenBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
          0.3,    0.4,   0.5,    0.75,  1,      2.5,  5,     7.5,  10,    20,  40,   80};
}

std::vector<double> ServingMetrics::RequestPhaseBuckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1,   1.5, 2,   2.5,  5,
          10,    15,    20,   30,   40,  50,  60,  120, 240, 480, 960, 1920, 7680};
}

std::vector<double> ServingMetrics::StepBuckets() {
  std::vector<double> buckets;
  for (int k = 0; k <= 16; ++k) buckets.push_back(0.0001 * std::ldexp(1.0, k));
  return buckets;
}

ServingMetrics::ServingMetrics(ServingMetricsOptions options)
    : model_name_(std::move(options.model_name)),
      registry_(std::make_shared<prometheus::Registry>()),
      ttft_buckets_(TimeToFirstTokenBuckets()),
      itl_buckets_(InterTokenBuckets()),
      phase_buckets_(RequestPhaseBuckets()),
      step_buckets_(StepBuckets()),
      token_count_buckets_(OneTwoFive(1e6)),
      ratio_buckets_({1, 1.25, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128}),
      batch_buckets_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}),
      running_(Gauges("kvserve_num_requests_running", "Requests admitted to the engine.").Add({})),
      waiting_(
          Gauges("kvserve_num_requests_waiting", "Requests queued, not yet admitted.").Add({})),
      kv_usage_(Gauges("kvserve_kv_cache_usage_perc", "Fraction (0..1) of the KV pool reserved.")
                    .Add({})),
      prompt_tokens_(Counters("kvserve_prompt_tokens_total", "Prompt tokens processed.").Add({})),
      generation_tokens_(Counters("kvserve_generation_tokens_total", "Tokens generated.").Add({})),
      success_(Counters("kvserve_request_success_total",
                        "Requests finished normally, by finished_reason.")),
      failure_(Counters("kvserve_request_failure_total",
                        "Requests ended with an error or cancelled, by gRPC status code.")),
      ttft_(Histograms("kvserve_time_to_first_token_seconds",
                       "Arrival to first token, by cache policy.")),
      itl_(Histograms("kvserve_inter_token_latency_seconds",
                      "Gap between consecutive tokens of a stream, by cache policy.")),
      tpot_(Histograms("kvserve_request_time_per_output_token_seconds",
                       "Per request: (e2e - TTFT) / (tokens - 1).")
                .Add({}, itl_buckets_)),
      e2e_(Histograms("kvserve_e2e_request_latency_seconds",
                      "Arrival to last token of a finished request.")
               .Add({}, phase_buckets_)),
      queue_time_(Histograms("kvserve_request_queue_time_seconds", "Arrival to admission.")
                      .Add({}, phase_buckets_)),
      prefill_time_(Histograms("kvserve_request_prefill_time_seconds", "Admission to first token.")
                        .Add({}, phase_buckets_)),
      decode_time_(Histograms("kvserve_request_decode_time_seconds", "First token to last token.")
                       .Add({}, phase_buckets_)),
      request_prompt_tokens_(
          Histograms("kvserve_request_prompt_tokens", "Prompt length per finished request.")
              .Add({}, token_count_buckets_)),
      request_generation_tokens_(
          Histograms("kvserve_request_generation_tokens", "Output length per finished request.")
              .Add({}, token_count_buckets_)),
      preemptions_(
          Counters("kvserve_num_preemptions_total", "Requests preempted to free KV memory.")
              .Add({})),
      step_seconds_(Histograms("kvserve_engine_step_seconds",
                               "One scheduler step, model call included, by phase.")),
      step_mixed_(step_seconds_.Add({{"phase", "mixed"}}, step_buckets_)),
      step_decode_(step_seconds_.Add({{"phase", "decode"}}, step_buckets_)),
      batch_size_(
          Histograms("kvserve_engine_batch_size", "Requests in a step.").Add({}, batch_buckets_)),
      step_tokens_(Histograms("kvserve_engine_step_tokens", "Tokens (prefill + decode) in a step.")
                       .Add({}, token_count_buckets_)),
      pool_bytes_(Gauges("kvserve_kv_pool_bytes", "KV pool bytes, by state.")),
      pool_reserved_(pool_bytes_.Add({{"state", "reserved"}})),
      pool_free_(pool_bytes_.Add({{"state", "free"}})),
      by_policy_(
          Counters("kvserve_requests_by_policy_total", "Requests admitted, by cache policy.")),
      evicted_(Counters("kvserve_cache_evicted_tokens_total",
                        "Tokens dropped or merged out of caches, by cache policy.")),
      compressions_(Counters("kvserve_cache_compression_events_total",
                             "Compression passes, by cache policy.")),
      compression_ratio_(
          Histograms("kvserve_cache_compression_ratio",
                     "Per finished request: tokens seen / peak tokens kept, by cache policy.")),
      policy_update_(Histograms("kvserve_cache_policy_update_seconds",
                                "Cache-maintenance time per engine step, by cache policy.")),
      prefill_skipped_(Histograms("kvserve_prefill_attention_skipped_ratio",
                                  "CritiPrefill: fraction of attention blocks skipped.")
                           .Add({}, Histogram::BucketBoundaries{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                                                                0.8, 0.9, 0.95, 1})) {
  for (const char* reason : kFinishedReasons) success_.Add({{"finished_reason", reason}});
  for (absl::StatusCode code : kFailureCodes) {
    failure_.Add({{"code", absl::StatusCodeToString(code)}});
  }
  for (const std::string& policy : options.policies) Policy(policy);
}

Family<Counter>& ServingMetrics::Counters(const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Labels(ModelLabel()).Register(*registry_);
}

Family<Gauge>& ServingMetrics::Gauges(const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Labels(ModelLabel()).Register(*registry_);
}

Family<Histogram>& ServingMetrics::Histograms(const char* name, const char* help) {
  return prometheus::BuildHistogram()
      .Name(name)
      .Help(help)
      .Labels(ModelLabel())
      .Register(*registry_);
}

std::string ServingMetrics::Exposition() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

ServingMetrics::PolicySeries& ServingMetrics::Policy(std::string_view policy) {
  std::lock_guard lock(policies_mutex_);
  if (auto it = policies_.find(policy); it != policies_.end()) return it->second;
  const Labels labels = {{"policy", std::string(policy)}};
  PolicySeries series = {&by_policy_.Add(labels),
                         &evicted_.Add(labels),
                         &compressions_.Add(labels),
                         &ttft_.Add(labels, ttft_buckets_),
                         &itl_.Add(labels, itl_buckets_),
                         &compression_ratio_.Add(labels, ratio_buckets_),
                         &policy_update_.Add(labels, step_buckets_)};
  return policies_.emplace(std::string(policy), series).first->second;
}

void ServingMetrics::OnRequestAdmitted(std::string_view policy, double queue_seconds) {
  Policy(policy).admitted->Increment();
  queue_time_.Observe(Clamp(queue_seconds));
}

void ServingMetrics::OnFirstToken(std::string_view policy, double time_to_first_token,
                                  double prefill_seconds) {
  Policy(policy).ttft->Observe(Clamp(time_to_first_token));
  prefill_time_.Observe(Clamp(prefill_seconds));
  generation_tokens_.Increment();
}

void ServingMetrics::OnNextToken(std::string_view policy, double inter_token_seconds) {
  Policy(policy).itl->Observe(Clamp(inter_token_seconds));
  generation_tokens_.Increment();
}

void ServingMetrics::OnRequestFinished(const FinishedRequest& r) {
  PolicySeries& policy = Policy(r.policy);
  policy.evicted->Increment(static_cast<double>(std::max<int64_t>(r.cache_evicted_tokens, 0)));
  policy.compressions->Increment(
      static_cast<double>(std::max<int64_t>(r.cache_compression_events, 0)));
  if (r.cache_peak_tokens > 0 && r.cache_tokens_seen > 0) {
    policy.compression_ratio->Observe(static_cast<double>(r.cache_tokens_seen) /
                                      static_cast<double>(r.cache_peak_tokens));
  }
  if (r.code != absl::StatusCode::kOk) {
    failure_.Add({{"code", absl::StatusCodeToString(r.code)}}).Increment();
    return;
  }
  success_.Add({{"finished_reason", std::string(r.finished_reason)}}).Increment();
  e2e_.Observe(Clamp(r.e2e_seconds));
  request_prompt_tokens_.Observe(static_cast<double>(r.prompt_tokens));
  request_generation_tokens_.Observe(static_cast<double>(r.generation_tokens));
  if (r.decode_seconds) decode_time_.Observe(Clamp(*r.decode_seconds));
  if (r.time_to_first_token && r.generation_tokens >= 2) {
    tpot_.Observe(Clamp((r.e2e_seconds - *r.time_to_first_token) /
                        static_cast<double>(r.generation_tokens - 1)));
  }
}

void ServingMetrics::OnRequestRejected(absl::StatusCode code) {
  if (code == absl::StatusCode::kOk) return;
  failure_.Add({{"code", absl::StatusCodeToString(code)}}).Increment();
}

void ServingMetrics::OnPreemption() { preemptions_.Increment(); }

void ServingMetrics::OnStep(const StepSample& step) {
  (step.prefill_tokens > 0 ? step_mixed_ : step_decode_).Observe(Clamp(step.seconds));
  batch_size_.Observe(static_cast<double>(step.batch_size));
  step_tokens_.Observe(static_cast<double>(step.prefill_tokens + step.decode_tokens));
  if (step.prefill_tokens > 0) prompt_tokens_.Increment(static_cast<double>(step.prefill_tokens));
}

void ServingMetrics::OnPolicyUpdate(std::string_view policy, double seconds) {
  Policy(policy).update->Observe(Clamp(seconds));
}

void ServingMetrics::SetQueue(int64_t running, int64_t waiting) {
  running_.Set(static_cast<double>(running));
  waiting_.Set(static_cast<double>(waiting));
}

void ServingMetrics::SetKvPool(int64_t reserved_bytes, int64_t capacity_bytes) {
  pool_reserved_.Set(static_cast<double>(reserved_bytes));
  pool_free_.Set(static_cast<double>(capacity_bytes - reserved_bytes));
  kv_usage_.Set(capacity_bytes > 0
                    ? static_cast<double>(reserved_bytes) / static_cast<double>(capacity_bytes)
                    : 0.0);
}

void ServingMetrics::OnPrefillAttentionSkipped(double ratio) { prefill_skipped_.Observe(ratio); }

}  // namespace kvserve
