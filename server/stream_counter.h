// Counts Generate streams in flight so that shutdown can wait for them to drain. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace kvserve {

class StreamCounter {
 public:
  void Add() {
    std::lock_guard lock(mutex_);
    ++count_;
  }
  void Remove() {
    std::lock_guard lock(mutex_);
    if (--count_ == 0) none_.notify_all();
  }
  int64_t count() const {
    std::lock_guard lock(mutex_);
    return count_;
  }
  // True when no stream is left before `timeout` passes.
  bool WaitUntilNone(std::chrono::steady_clock::duration timeout) {
    std::unique_lock lock(mutex_);
    return none_.wait_for(lock, timeout, [&] { return count_ == 0; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable none_;
  int64_t count_ = 0;
};

}  // namespace kvserve
