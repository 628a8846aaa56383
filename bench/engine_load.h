// Load through the engine's own API (no gRPC): time to first token of single prompts on an idle
// engine, and a closed-loop workload (N requests, at most C in flight) whose output tokens/s is
// comparable with kvserve-bench-serving's over gRPC.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>

#include "cache/cache_spec.h"
#include "scheduler/engine.h"

namespace kvserve::bench {

struct TtftResult {
  double median_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
};

// `repeats` requests of `prompt_tokens` random ids, one at a time, after one warm-up request:
// Submit until the first token arrives.
absl::StatusOr<TtftResult> MeasureTtft(Engine& engine, int64_t prompt_tokens, int64_t repeats);

struct WorkloadResult {
  int64_t requests = 0;
  int64_t failed = 0;
  int64_t output_tokens = 0;
  double seconds = 0;
  double output_tokens_per_s = 0;
};

struct WorkloadSpec {
  int64_t num_requests = 64;
  int64_t concurrency = 64;
  int64_t prompt_tokens = 128;
  int64_t output_tokens = 256;
  CacheSpec cache;
};

absl::StatusOr<WorkloadResult> RunWorkload(Engine& engine, const WorkloadSpec& spec);

}  // namespace kvserve::bench
