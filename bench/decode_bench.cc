#include "bench/decode_bench.h"

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include "bench/random_tokens.h"
#include "cache/policy_factory.h"
#include "model/device_memory.h"

#ifdef KVSERVE_WITH_CUDA
#include <cuda_profiler_api.h>
#endif

namespace kvserve::bench {
namespace {

struct Request {
  std::unique_ptr<CachePolicy> policy;
  std::unique_ptr<KvCache> cache;
  std::vector<int32_t> prompt;
  int32_t next = 1;
};

double Percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const size_t i = std::min(values.size() - 1, static_cast<size_t>(q * (values.size() - 1) + 0.5));
  return values[i];
}

// One step of the whole batch through Forward, then the greedy choice copied to the host (what
// the engine does); returns its duration in ms.
double Step(LlamaModel& model, std::vector<Request>& requests) {
  std::vector<SequenceInput> batch;
  for (Request& r : requests) batch.push_back({r.cache.get(), r.policy.get(), {&r.next, 1}, false});
  const auto start = std::chrono::steady_clock::now();
  auto ids = model.Forward(batch).argmax(-1).cpu();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].next = static_cast<int32_t>(ids.data_ptr<int64_t>()[i]);
  }
  return ms;
}

}  // namespace

absl::StatusOr<DecodeResult> RunDecodeCase(LlamaModel& model, const DecodeCase& c) {
  const bool full = c.cache.kind == CachePolicyKind::kFull;
  // Each cache is filled by one prefill chunk: the context (FULL) or the budget, so decode steps
  // start at the budget and evict from the first. (The chunk only sizes the caches' spare room.)
  const int64_t fill = full ? c.context : c.cache.budget_tokens;
  const int64_t chunk = fill;
  const int64_t max_new = c.steps + c.warmup + 1;
  DecodeResult result;
  std::mt19937 rng(1);
  std::vector<Request> requests(c.batch);
  for (Request& r : requests) {
    auto policy = MakeCachePolicy(c.cache, {fill, max_new});
    if (!policy.ok()) return policy.status();
    r.policy = std::move(*policy);
    r.prompt = RandomTokens(rng, fill, model.config().vocab_size);
    result.kv_bytes += r.policy->Capacity(chunk) * model.cache_shape().BytesPerToken();
  }
  if (auto memory = QueryDeviceMemory(model.options().device); memory.ok()) {
    if (result.kv_bytes > memory->free_bytes * 0.9) {
      result.fits = false;
      return result;
    }
  }
  for (Request& r : requests) {
    r.cache = std::make_unique<KvCache>(model.cache_shape(), r.policy->Capacity(chunk));
  }
  // Prefill in groups of requests per Forward, about 8K tokens each.
  const int64_t group = std::max<int64_t>(1, 8192 / fill);
  for (int64_t first = 0; first < c.batch; first += group) {
    const int64_t last = std::min(c.batch, first + group);
    for (int64_t start = 0; start < fill; start += chunk) {
      std::vector<SequenceInput> batch;
      for (int64_t i = first; i < last; ++i) {
        Request& r = requests[i];
        batch.push_back(
            {r.cache.get(), r.policy.get(),
             std::span<const int32_t>(r.prompt).subspan(start, std::min(chunk, fill - start)),
             false});
      }
      model.Forward(batch);
    }
  }
  DecodeRunner* runner = model.decode_runner();
  if (runner != nullptr) runner->EnableProfiling(true);
  for (int64_t i = 0; i < c.warmup; ++i) Step(model, requests);
  std::vector<double> steps, device_steps, maintenance;
#ifdef KVSERVE_WITH_CUDA
  if (c.profiler_range) cudaProfilerStart();
#endif
  for (int64_t i = 0; i < c.steps; ++i) {
    steps.push_back(Step(model, requests));
    if (runner != nullptr) {
      const auto times = runner->LastStepTimes();
      device_steps.push_back(times.step_ms);
      maintenance.push_back(times.maintenance_ms);
    }
  }
#ifdef KVSERVE_WITH_CUDA
  if (c.profiler_range) cudaProfilerStop();
#endif
  if (runner != nullptr) runner->EnableProfiling(false);
  result.step_ms = Percentile(steps, 0.5);
  result.step_ms_p90 = Percentile(steps, 0.9);
  if (!device_steps.empty()) {
    result.device_step_ms = Percentile(device_steps, 0.5);
    result.maintenance_ms = Percentile(maintenance, 0.5);
  }
  result.tokens_per_s = 1000.0 * c.batch / result.step_ms;
  return result;
}

}  // namespace kvserve::bench
