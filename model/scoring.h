// Teacher-forced scoring: the negative log-likelihood of each token given the ones before it, with
// a full cache. The base of `kvserve-cli score` and of the quality tools.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <span>
#include <vector>

#include "model/llama_model.h"

namespace kvserve {

// Returns -log p(ids[i] | ids[0..i-1]) for i = 1..n-1 (natural log), feeding `chunk` tokens per
// forward call. INVALID_ARGUMENT if ids has fewer than 2 tokens, more than the model's context, or
// an id outside the vocabulary.
absl::StatusOr<std::vector<double>> TokenNll(LlamaModel& model, std::span<const int32_t> ids,
                                             int64_t chunk = 512);

}  // namespace kvserve
