// kvserve's Prometheus metrics (../shared/design/METRICS.md): one registry holding every family
// with its exact name, labels and buckets, and small typed methods the engine and the server call.
// Torch-free; depends on prometheus-cpp core only.
//
// Threads: every method may be called from any thread at any time (prometheus-cpp metrics are
// thread-safe and the per-label series are looked up under the family's own lock). In kvserve the
// engine thread calls the request, token, step and pool methods; gRPC threads call
// OnRequestRejected; the HTTP endpoint (metrics_server.h) calls Exposition.
//
// Who counts what, so that nothing is counted twice:
// - The engine counts every request it accepted (Submit returned OK): admission, tokens, the end.
// - The server counts, through OnRequestRejected, the requests that never reached the engine
//   (its own validation, and the errors Submit returned).
//
// Every series carries the constant label model_name. Series of the label values known up front
// (policies given at construction, finish reasons, phases, pool states, the gRPC codes a request
// can end with) exist from the start at zero, so rates and ratios are defined before traffic.
#pragma once

#include <absl/status/status.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvserve {

struct ServingMetricsOptions {
  std::string model_name;
  // Cache policy label values (e.g. "FULL", "H2O") whose per-policy series are created at zero.
  // Other values passed later still work; their series appear on first use.
  std::vector<std::string> policies;
};

// One finished request as the engine saw it.
struct FinishedRequest {
  std::string_view policy;
  // OK: finished normally, and finished_reason is "length", "stop" or "eos". Otherwise the code the
  // request ended with (CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE, INTERNAL, ...).
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string_view finished_reason;
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  double e2e_seconds = 0;                     // arrival → last token
  std::optional<double> time_to_first_token;  // seconds; unset when no token was produced
  std::optional<double> decode_seconds;       // first token → last token
  // The request's cache policy counters (cache/cache_policy.h CacheStats) at its end.
  int64_t cache_tokens_seen = 0;  // tokens that went through the cache
  int64_t cache_peak_tokens = 0;
  int64_t cache_evicted_tokens = 0;
  int64_t cache_compression_events = 0;
};

// One engine step.
struct StepSample {
  double seconds = 0;          // plan + model call + sampling + emits
  int64_t batch_size = 0;      // requests in the step
  int64_t prefill_tokens = 0;  // prompt tokens processed
  int64_t decode_tokens = 0;   // one per decoding request
};

class ServingMetrics {
 public:
  explicit ServingMetrics(ServingMetricsOptions options);
  ServingMetrics(const ServingMetrics&) = delete;
  ServingMetrics& operator=(const ServingMetrics&) = delete;

  const std::string& model_name() const { return model_name_; }
  // The registry, for an HTTP endpoint or for adding families elsewhere (kept alive by the caller's
  // copy of the pointer).
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Every family in the Prometheus text exposition format (version 0.0.4).
  std::string Exposition() const;

  // Creates the per-policy series of `policy` at zero (as ServingMetricsOptions::policies does),
  // for policies known only after construction, e.g. from the engine's model_info().
  void DeclarePolicy(std::string_view policy) { Policy(policy); }

  // --- Requests (engine) ---
  // Admitted to the engine after `queue_seconds` in the queue: requests_by_policy, queue time.
  void OnRequestAdmitted(std::string_view policy, double queue_seconds);
  // The first token of a request: TTFT (arrival → first token), prefill time (admission → first
  // token), one generation token.
  void OnFirstToken(std::string_view policy, double time_to_first_token, double prefill_seconds);
  // Every later token: inter-token latency (gap since the request's previous token), one
  // generation token.
  void OnNextToken(std::string_view policy, double inter_token_seconds);
  // The end of an accepted request. OK: request_success{finished_reason} and the per-request
  // latency and length histograms (e2e, decode, time per output token when >= 2 tokens, prompt
  // and generation lengths). Not OK: request_failure{code} only, so that latency panels show
  // served requests. Either way the cache counters (evicted tokens, compression events) and, when
  // the cache held anything, the compression ratio (tokens seen / peak tokens kept).
  void OnRequestFinished(const FinishedRequest& request);
  // A request that ended with `code` before the engine accepted it (server side).
  // REQUIRES: code != OK.
  void OnRequestRejected(absl::StatusCode code);
  void OnPreemption();

  // --- Engine state (engine thread) ---
  // One step: step time by phase ("mixed" if any prefill, else "decode"), batch size, step
  // tokens, prompt tokens.
  void OnStep(const StepSample& step);
  // Time the requests of one policy spent in cache maintenance (CachePolicy::Update) in one step.
  void OnPolicyUpdate(std::string_view policy, double seconds);
  void SetQueue(int64_t running, int64_t waiting);
  // KV pool: reserved and free bytes, and the reserved fraction.
  void SetKvPool(int64_t reserved_bytes, int64_t capacity_bytes);
  // CritiPrefill: the fraction of attention blocks a prefill skipped.
  void OnPrefillAttentionSkipped(double ratio);

  // Bucket boundaries of METRICS.md, exposed for tests and the dashboard's checks.
  static std::vector<double> TimeToFirstTokenBuckets();
  static std::vector<double> InterTokenBuckets();
  static std::vector<double> RequestPhaseBuckets();  // e2e, queue, prefill, decode
  static std::vector<double> StepBuckets();          // engine step and policy update

 private:
  using Histogram = prometheus::Histogram;
  // Family builders; every family carries the constant label model_name. Used while constructing:
  // they need only model_name_ and registry_, which are initialized first.
  prometheus::Labels ModelLabel() const { return {{"model_name", model_name_}}; }
  prometheus::Family<prometheus::Counter>& Counters(const char* name, const char* help);
  prometheus::Family<prometheus::Gauge>& Gauges(const char* name, const char* help);
  prometheus::Family<Histogram>& Histograms(const char* name, const char* help);
  // The series of one policy label value, resolved once: prometheus-cpp's Family::Add builds a new
  // metric (a histogram's buckets included) on every call before finding the existing one.
  struct PolicySeries {
    prometheus::Counter* admitted;
    prometheus::Counter* evicted;
    prometheus::Counter* compressions;
    Histogram* ttft;
    Histogram* itl;
    Histogram* compression_ratio;
    Histogram* update;
  };
  PolicySeries& Policy(std::string_view policy);

  const std::string model_name_;
  std::shared_ptr<prometheus::Registry> registry_;
  const Histogram::BucketBoundaries ttft_buckets_, itl_buckets_, phase_buckets_, step_buckets_,
      token_count_buckets_, ratio_buckets_, batch_buckets_;

  // Serving (vLLM names with the kvserve_ prefix).
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& kv_usage_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Family<prometheus::Counter>& success_;
  prometheus::Family<prometheus::Counter>& failure_;
  prometheus::Family<Histogram>& ttft_;
  prometheus::Family<Histogram>& itl_;
  Histogram& tpot_;
  Histogram& e2e_;
  Histogram& queue_time_;
  Histogram& prefill_time_;
  Histogram& decode_time_;
  Histogram& request_prompt_tokens_;
  Histogram& request_generation_tokens_;
  prometheus::Counter& preemptions_;
  // Engine.
  prometheus::Family<Histogram>& step_seconds_;
  Histogram& step_mixed_;
  Histogram& step_decode_;
  Histogram& batch_size_;
  Histogram& step_tokens_;
  prometheus::Family<prometheus::Gauge>& pool_bytes_;
  prometheus::Gauge& pool_reserved_;
  prometheus::Gauge& pool_free_;
  // Cache policies.
  prometheus::Family<prometheus::Counter>& by_policy_;
  prometheus::Family<prometheus::Counter>& evicted_;
  prometheus::Family<prometheus::Counter>& compressions_;
  prometheus::Family<Histogram>& compression_ratio_;
  prometheus::Family<Histogram>& policy_update_;
  Histogram& prefill_skipped_;

  std::mutex policies_mutex_;
  std::map<std::string, PolicySeries, std::less<>> policies_;  // guarded; entries never erased
};

}  // namespace kvserve
