#include "cache/cache_policy.h"

#include <algorithm>

namespace kvserve {

at::Tensor SlotRanks(const RingLayout& ring, int64_t length, at::Device device) {
  auto slots = at::arange(length, at::TensorOptions().dtype(at::kLong).device(device));
  if (!ring.ranks.empty()) {
    const int64_t given = std::min<int64_t>(length, static_cast<int64_t>(ring.ranks.size()));
    auto ranks = at::from_blob(const_cast<int32_t*>(ring.ranks.data()), {given},
                               at::TensorOptions().dtype(at::kInt));
    slots.narrow(0, 0, given).copy_(ranks);
    return slots;
  }
  if (ring.size == 0) return slots;
  auto in_ring = (slots >= ring.begin).logical_and(slots < ring.begin + ring.size);
  auto ring_rank = ring.begin + at::remainder(slots - ring.head, ring.size);
  return at::where(in_ring, ring_rank, slots);
}

void CachePolicy::CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& /*step*/) {
  CommitDecodeToken(cache, false);
}

void CachePolicy::CommitDecodeToken(KvCache& cache, bool evicted) {
  stats_.peak_tokens = std::max(stats_.peak_tokens, cache.length(0));
  if (!evicted) return;
  cache.Shrink(1);
  CountEviction(0, 1);
}

}  // namespace kvserve
