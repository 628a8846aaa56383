#include "cache/kv_pool.h"

#include <cassert>

namespace kvserve {

bool KvPool::TryReserve(int64_t bytes) {
  std::lock_guard lock(mutex_);
  if (bytes < 0 || reserved_bytes_ + bytes > capacity_bytes_) return false;
  reserved_bytes_ += bytes;
  return true;
}

void KvPool::Release(int64_t bytes) {
  std::lock_guard lock(mutex_);
  assert(bytes <= reserved_bytes_);
  reserved_bytes_ -= bytes;
}

int64_t KvPool::reserved_bytes() const {
  std::lock_guard lock(mutex_);
  return reserved_bytes_;
}

}  // namespace kvserve
