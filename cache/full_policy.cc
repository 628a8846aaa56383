#include "cache/full_policy.h"

#include <algorithm>

namespace kvserve {

void FullPolicy::Update(KvCache& cache, const LayerStep& step) {
  stats_.peak_tokens = std::max(stats_.peak_tokens, cache.length(step.layer));
}

}  // namespace kvserve
