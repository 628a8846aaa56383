#include "scheduler/engine_metrics.h"

#include "metrics/serving_metrics.h"

namespace kvserve {
namespace {

double Seconds(RequestTimes::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// METRICS.md's finished_reason values; empty for ends that are not a normal finish.
std::string_view FinishedReasonLabel(FinishReason reason) {
  const bool normal = reason == FinishReason::kLength || reason == FinishReason::kStop ||
                      reason == FinishReason::kEos;
  return normal ? FinishReasonName(reason) : "";
}

}  // namespace

void StepRecord::AddPolicyUpdate(std::string_view policy, double seconds) {
  for (auto& [name, total] : policy_update_seconds) {
    if (name == policy) {
      total += seconds;
      return;
    }
  }
  policy_update_seconds.emplace_back(policy, seconds);
}

void EngineMetrics::Admitted(std::string_view policy, RequestTimes& times) {
  times.admitted = RequestTimes::Clock::now();
  if (metrics_) metrics_->OnRequestAdmitted(policy, Seconds(times.admitted - times.arrival));
}

void EngineMetrics::TokenSent(std::string_view policy, RequestTimes& times) {
  const auto now = RequestTimes::Clock::now();
  const auto previous = times.last_token;
  times.last_token = now;
  if (!times.first_token) {
    times.first_token = now;
    if (metrics_) {
      metrics_->OnFirstToken(policy, Seconds(now - times.arrival), Seconds(now - times.admitted));
    }
  } else if (metrics_) {
    metrics_->OnNextToken(policy, Seconds(now - previous));
  }
}

void EngineMetrics::Finished(std::string_view policy, const RequestTimes& times,
                             FinishReason reason, const absl::Status& status, const Usage& usage,
                             int64_t cache_tokens_seen) {
  if (!metrics_) return;
  FinishedRequest r;
  r.policy = policy;
  r.code = status.code();
  r.finished_reason = FinishedReasonLabel(reason);
  if (r.code == absl::StatusCode::kOk && r.finished_reason.empty()) {
    r.code = absl::StatusCode::kUnknown;  // an OK end without a reason would be an engine bug
  }
  r.prompt_tokens = usage.prompt_tokens;
  r.generation_tokens = usage.completion_tokens;
  r.e2e_seconds = Seconds(RequestTimes::Clock::now() - times.arrival);  // the final event is now
  if (times.first_token) {
    r.time_to_first_token = Seconds(*times.first_token - times.arrival);
    r.decode_seconds = Seconds(times.last_token - *times.first_token);
  }
  r.cache_tokens_seen = cache_tokens_seen;
  r.cache_peak_tokens = usage.cache.peak_tokens;
  r.cache_evicted_tokens = usage.cache.evicted_tokens;
  r.cache_compression_events = usage.cache.compression_events;
  metrics_->OnRequestFinished(r);
}

void EngineMetrics::Step(const StepRecord& step) {
  if (!metrics_) return;
  metrics_->OnStep({Seconds(RequestTimes::Clock::now() - step.start), step.batch_size,
                    step.prefill_tokens, step.decode_tokens});
  for (const auto& [policy, seconds] : step.policy_update_seconds) {
    metrics_->OnPolicyUpdate(policy, seconds);
  }
}

void EngineMetrics::PrefillAttentionSkipped(double fraction) {
  if (metrics_) metrics_->OnPrefillAttentionSkipped(fraction);
}

void EngineMetrics::State(const EngineStats& stats) {
  if (!metrics_) return;
  metrics_->SetQueue(stats.running, stats.waiting);
  metrics_->SetKvPool(stats.kv_pool_reserved_bytes, stats.kv_pool_capacity_bytes);
}

}  // namespace kvserve
