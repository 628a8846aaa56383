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
  // Prefill chunks end on a multiple of this many prompt tokens where they can (CritiPrefill's
  // segment size, prefill_and_heads.md §1.8); 1: anywhere.
  int64_t chunk_alignment = 1;
  int64_t prompt_done = 0;  // prompt tokens already prefilled: where the next chunk starts
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
// is left of max_batch_tokens), and none is planned once that is 0. A chunk that does not finish
// the prompt is then shortened to end on a multiple of chunk_alignment, unless no such end lies
// inside it (a cap below the alignment): then it stays as it is, so every request progresses.
std::vector<PlannedWork> PlanStep(std::span<const PlanCandidate> candidates,
                                  const PlannerLimits& limits);

}  // namespace kvserve
