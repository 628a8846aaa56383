// Score-based token selection shared by the policies that rank tokens (H2O, SnapKV).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace kvserve {

// Per row of `scores` [heads, n] (slots in temporal order), the slots of the `k` best tokens by
// (score descending, slot ascending) (policies.md §0.5 item 2: a tie keeps the older token),
// returned ascending [heads, k] int64 so the kept slots stay in temporal order.
// REQUIRES: 0 <= k <= n.
at::Tensor TopScoringSlots(const at::Tensor& scores, int64_t k);

}  // namespace kvserve
