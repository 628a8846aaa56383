#include "scheduler/step_planner.h"

#include <algorithm>

#include "model/criti_prefill_params.h"

namespace kvserve {

std::vector<PlannedWork> PlanStep(std::span<const PlanCandidate> candidates,
                                  const PlannerLimits& limits) {
  std::vector<PlannedWork> plan;
  int64_t budget = limits.max_batch_tokens;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].prompt_remaining == 0) {
      plan.push_back({i, 1, true});
      --budget;
    }
  }
  for (size_t i = 0; i < candidates.size() && budget > 0; ++i) {
    const PlanCandidate& c = candidates[i];
    if (c.prompt_remaining == 0) continue;
    const int64_t tokens =
        AlignedChunkTokens(c.prompt_done,
                           std::min({c.prompt_remaining, limits.prefill_chunk,
                                     std::max<int64_t>(c.max_step_tokens, 1), budget}),
                           c.prompt_remaining, c.chunk_alignment);
    plan.push_back({i, tokens, false});
    budget -= tokens;
  }
  return plan;
}

}  // namespace kvserve
