#include "scheduler/timed_policy.h"

#include <chrono>

namespace kvserve {

void TimedCachePolicy::Update(KvCache& cache, const LayerStep& step) {
  const auto start = std::chrono::steady_clock::now();
  inner_->Update(cache, step);
  update_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats_ = inner_->stats();
}

void TimedCachePolicy::CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) {
  const auto start = std::chrono::steady_clock::now();
  inner_->CommitBatchedDecode(cache, step);
  update_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats_ = inner_->stats();
}

double TimedCachePolicy::TakeUpdateSeconds() {
  const double seconds = update_seconds_;
  update_seconds_ = 0;
  return seconds;
}

}  // namespace kvserve
