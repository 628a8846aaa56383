// The engine's side of ServingMetrics (metrics/serving_metrics.h): turns engine events into the
// METRICS.md series. Private to scheduler/; torch-free. Every method records nothing when built
// with a null ServingMetrics, but the timestamps of RequestTimes are kept either way (the usage
// report needs them). Called on the engine thread only.
#pragma once

#include <absl/status/status.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/engine.h"

namespace kvserve {

class ServingMetrics;

// When a request passed each point of its life.
struct RequestTimes {
  using Clock = std::chrono::steady_clock;
  Clock::time_point arrival;
  Clock::time_point admitted;
  std::optional<Clock::time_point> first_token;
  Clock::time_point last_token;
};

// One engine step, filled while it runs and recorded at its end.
struct StepRecord {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  int64_t batch_size = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  // Time in CachePolicy::Update, summed per policy over the step's requests.
  std::vector<std::pair<std::string, double>> policy_update_seconds;
  void AddPolicyUpdate(std::string_view policy, double seconds);
};

class EngineMetrics {
 public:
  explicit EngineMetrics(ServingMetrics* metrics) : metrics_(metrics) {}

  // Stamps times.admitted; requests by policy and queue time.
  void Admitted(std::string_view policy, RequestTimes& times);
  // A token sent now: stamps first_token / last_token; TTFT and prefill time, or inter-token time.
  void TokenSent(std::string_view policy, RequestTimes& times);
  // The final event of an accepted request. `cache_tokens_seen`: tokens that went through its
  // cache (KvCache::tokens_seen; 0 if it never had one).
  void Finished(std::string_view policy, const RequestTimes& times, FinishReason reason,
                const absl::Status& status, const Usage& usage, int64_t cache_tokens_seen);
  void Step(const StepRecord& step);
  // A CritiPrefill prompt fully prefilled, having skipped this fraction of dense prefill's
  // attention (query, key, KV head) pairs over all its layers.
  void PrefillAttentionSkipped(double fraction);
  // Queue and KV pool gauges.
  void State(const EngineStats& stats);

 private:
  ServingMetrics* const metrics_;
};

}  // namespace kvserve
