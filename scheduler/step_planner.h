// Plans one engine step from the running requests' needs: one decode token for every request past
// its prompt, then prompt chunks in admission order while the step's token budget lasts (vLLM v1's
// SchedulerOutput, in miniature). Pure: no tensors, no model, unit-testable with fake requests.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvserve {

struct PlanCandidate {
  int64_t prompt_remaining = 0;  // prompt tokens not yet prefilled; 0 when decoding
  int64_t max_step_tokens = 0;   // the most tokens its cache policy accepts in one step (>= 1)
};

struct PlannedWork {
  size_t candidate = 0;  // index into the candidates
  int64_t tokens = 0;    // prompt tokens to prefill, or 1 to decode
  bool decode = false;
};

struct PlannerLimits {
  int64_t max_batch_tokens = 4096;
  int64_t prefill_chunk = 512;
};

// Candidates in admission order. Decode tokens always fit (the running set is bounded by the
// engine's max_running); each prefill chunk is min(remaining, prefill_chunk, max_step_tokens, what
// is left of max_batch_tokens), and none is planned once that is 0.
std::vector<PlannedWork> PlanStep(std::span<const PlanCandidate> candidates,
                                  const PlannerLimits& limits);

}  // namespace kvserve
