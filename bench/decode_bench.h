// Decode-step timing of a model on its own (no scheduler): a batch of requests of one cache policy,
// their caches filled by a prefill, then repeated decode steps. Medians of per-step times, timed
// with CUDA events on CUDA (host clock on the CPU), after warm-up steps (which capture the graphs).
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <string>

#include "cache/cache_spec.h"
#include "model/llama_model.h"

namespace kvserve::bench {

struct DecodeCase {
  CacheSpec cache;  // FULL, or a policy with its budget
  int64_t batch = 1;
  int64_t context = 512;  // tokens prefilled before decoding (FULL: the context the steps see)
  int64_t steps = 32;
  int64_t warmup = 4;
  // CUDA: the timed steps run between cudaProfilerStart and Stop, for a profiler started with
  // profiling off (ncu --profile-from-start off).
  bool profiler_range = false;
};

struct DecodeResult {
  bool fits = true;    // false: the caches would not fit in free device memory
  double step_ms = 0;  // median host time of a whole step, greedy ids on the host
  double step_ms_p90 = 0;
  double device_step_ms = 0;  // median CUDA-event time of the runner's step (CUDA only)
  double maintenance_ms = 0;  // median cache-maintenance part of it (CUDA only)
  double tokens_per_s = 0;    // batch / step_ms
  int64_t kv_bytes = 0;       // the batch's KV caches
};

// INVALID_ARGUMENT for a bad spec; the model's errors otherwise.
absl::StatusOr<DecodeResult> RunDecodeCase(LlamaModel& model, const DecodeCase& c);

}  // namespace kvserve::bench
