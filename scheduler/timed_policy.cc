#include "scheduler/timed_policy.h"

#include <chrono>

namespace kvserve {

template <typename F>
void TimedCachePolicy::Timed(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  update_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats_ = inner_->stats();
}

void TimedCachePolicy::Update(KvCache& cache, const LayerStep& step) {
  Timed([&] { inner_->Update(cache, step); });
}

void TimedCachePolicy::CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) {
  Timed([&] { inner_->CommitBatchedDecode(cache, step); });
}

double TimedCachePolicy::TakeUpdateSeconds() {
  const double seconds = update_seconds_;
  update_seconds_ = 0;
  return seconds;
}

}  // namespace kvserve
