// The KV memory pool: a fixed number of bytes, sized once at start-up, from which each admitted
// request reserves its cache's footprint. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>

namespace kvserve {

class KvPool {
 public:
  explicit KvPool(int64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  // Reserves `bytes` if they fit; returns false (and reserves nothing) otherwise.
  bool TryReserve(int64_t bytes);
  // Returns bytes taken by TryReserve. REQUIRES: bytes <= reserved_bytes().
  void Release(int64_t bytes);

  int64_t capacity_bytes() const { return capacity_bytes_; }
  int64_t reserved_bytes() const;

 private:
  const int64_t capacity_bytes_;
  mutable std::mutex mutex_;
  int64_t reserved_bytes_ = 0;
};

}  // namespace kvserve
