#include "bench/engine_load.h"

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "bench/random_tokens.h"

namespace kvserve::bench {
namespace {

using Clock = std::chrono::steady_clock;

GenerationRequest RandomRequest(std::mt19937& rng, int64_t vocab, int64_t prompt_tokens,
                                int64_t output_tokens, const CacheSpec& cache) {
  GenerationRequest request;
  request.prompt_ids = RandomTokens(rng, prompt_tokens, vocab);
  request.sampling.max_new_tokens = static_cast<int32_t>(output_tokens);
  request.sampling.ignore_eos = true;
  request.cache = cache;
  return request;
}

// Counts requests in flight and their tokens; waits bounded by `timeout`.
class Tracker {
 public:
  TokenSink Sink(std::optional<Clock::time_point>* first_token = nullptr) {
    {
      std::lock_guard lock(mutex_);
      ++in_flight_;
    }
    return [this, first_token](TokenEvent event) {
      std::lock_guard lock(mutex_);
      if (first_token != nullptr && !first_token->has_value() && !event.token_ids.empty()) {
        *first_token = Clock::now();
      }
      tokens_ += static_cast<int64_t>(event.token_ids.size());
      if (event.finished) {
        --in_flight_;
        if (!event.status.ok()) ++failed_;
        changed_.notify_all();
      }
    };
  }
  void Cancelled() {  // Submit refused the request: its sink never runs
    std::lock_guard lock(mutex_);
    --in_flight_;
    ++failed_;
  }
  bool WaitBelow(int64_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return in_flight_ < n; });
  }
  int64_t tokens() {
    std::lock_guard lock(mutex_);
    return tokens_;
  }
  int64_t failed() {
    std::lock_guard lock(mutex_);
    return failed_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t in_flight_ = 0, tokens_ = 0, failed_ = 0;
};

constexpr std::chrono::seconds kTimeout(600);

}  // namespace

absl::StatusOr<TtftResult> MeasureTtft(Engine& engine, int64_t prompt_tokens, int64_t repeats) {
  std::mt19937 rng(5);
  const int64_t vocab = engine.model_info().vocab_size;
  std::vector<double> times;
  for (int64_t i = 0; i <= repeats; ++i) {  // the first is a warm-up
    Tracker tracker;
    std::optional<Clock::time_point> first;
    const auto start = Clock::now();
    auto handle =
        engine.Submit(RandomRequest(rng, vocab, prompt_tokens, 1, {}), tracker.Sink(&first));
    if (!handle.ok()) return handle.status();
    if (!tracker.WaitBelow(1, kTimeout)) return absl::DeadlineExceededError("TTFT request hung");
    if (tracker.failed() > 0 || !first) return absl::InternalError("TTFT request failed");
    if (i > 0) times.push_back(std::chrono::duration<double, std::milli>(*first - start).count());
  }
  std::sort(times.begin(), times.end());
  return TtftResult{times[times.size() / 2], times.front(), times.back()};
}

absl::StatusOr<WorkloadResult> RunWorkload(Engine& engine, const WorkloadSpec& spec) {
  std::mt19937 rng(7);
  const int64_t vocab = engine.model_info().vocab_size;
  std::vector<GenerationRequest> requests;
  for (int64_t i = 0; i < spec.num_requests; ++i) {
    requests.push_back(
        RandomRequest(rng, vocab, spec.prompt_tokens, spec.output_tokens, spec.cache));
  }
  Tracker tracker;
  const auto start = Clock::now();
  for (GenerationRequest& request : requests) {
    if (!tracker.WaitBelow(spec.concurrency, kTimeout)) {
      return absl::DeadlineExceededError("workload stalled");
    }
    auto handle = engine.Submit(std::move(request), tracker.Sink());
    if (!handle.ok()) tracker.Cancelled();
  }
  if (!tracker.WaitBelow(1, kTimeout)) return absl::DeadlineExceededError("workload stalled");
  WorkloadResult result;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.requests = spec.num_requests;
  result.failed = tracker.failed();
  result.output_tokens = tracker.tokens();
  result.output_tokens_per_s = result.output_tokens / result.seconds;
  return result;
}

}  // namespace kvserve::bench
