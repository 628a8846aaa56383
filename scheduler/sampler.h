// Per-request token sampling on the CPU: repetition penalty, temperature, top-k, top-p and min-p in
// Hugging Face's order, with the request's own random generator, so the same request and seed give
// the same tokens whatever else shares the batch. Torch-free.
#pragma once

#include <absl/status/status.h>

#include <cstdint>
#include <random>
#include <span>
#include <unordered_set>
#include <vector>

#include "scheduler/engine.h"

namespace kvserve {

// INVALID_ARGUMENT naming the field ("sampling.top_p must be in (0, 1], got 1.5") for a value out
// of range; `max_new_tokens_limit` bounds sampling.max_new_tokens.
absl::Status ValidateSamplingParams(const SamplingParams& params, int32_t max_new_tokens_limit);

class Sampler {
 public:
  // `seed` fixes the random stream; `prompt` seeds the repetition-penalty set.
  Sampler(const SamplingParams& params, uint64_t seed, std::span<const int32_t> prompt);

  // Picks the next token from one row of float32 logits [vocab] and remembers it.
  int32_t Sample(std::span<const float> logits);

  // True when Sample is a plain argmax (temperature 0, no repetition penalty), which the caller
  // may compute on the device instead (the same lowest id among equal maxima) and skip Sample.
  bool greedy() const { return params_.temperature == 0.0f && params_.repetition_penalty == 1.0f; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> seen_;  // prompt and generated ids, for the repetition penalty
};

}  // namespace kvserve
