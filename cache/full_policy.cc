#include "cache/full_policy.h"

#include <algorithm>

namespace kvserve {

PolicyDescription FullPolicy::Describe() {
  return {
      CachePolicyKind::kFull, true, "every token is kept; reserves prompt + max_new_tokens", {}};
}

void FullPolicy::Update(KvCache& cache, const LayerStep& step) {
  stats_.peak_tokens = std::max(stats_.peak_tokens, cache.length(step.layer));
}

}  // namespace kvserve
