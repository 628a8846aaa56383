#include "cache/score_selection.h"

namespace kvserve {

at::Tensor TopScoringSlots(const at::Tensor& scores, int64_t k) {
  // A stable descending sort keeps equal scores in slot order, so the cut at k drops the newest of
  // a tie; bare topk would make no such promise.
  auto order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/true));
  return std::get<0>(at::sort(order.narrow(1, 0, k), /*dim=*/1));
}

}  // namespace kvserve
