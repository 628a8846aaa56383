// Applies decode-step maintenance planned by policies (CachePolicy::PlanBatchedDecode) to many
// requests and every layer in one kernel launch per kind of rule (kernels/decode_maintenance.h).
// CUDA builds only.
#pragma once

#include <span>

#include "cache/cache_policy.h"
#include "cache/kv_cache.h"

namespace kvserve {

// caches[i] gets steps[i] (kAppendOnly steps are skipped). Each cache's lengths still count the
// step's new token; its policy's CommitBatchedDecode does the bookkeeping afterwards. A
// kLowestScore or kSlotChain step reads the step's key mass from the cache's key_mass_storage().
// REQUIRES: CUDA caches of one shape, every layer equally long.
void ApplyBatchedDecodeSteps(std::span<KvCache* const> caches,
                             std::span<const BatchedDecodeStep* const> steps);

}  // namespace kvserve
