// The requests of one benchmark run: prompts (random token ids or documents of a text file),
// output lengths (fixed or uniform), cache policies cycled over the requests, and arrival times
// (Poisson at a given rate, or all at once).
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kvserve/v1/generation.pb.h"

namespace kvserve::bench {

struct WorkloadOptions {
  int64_t num_requests = 64;
  int64_t prompt_len = 32;     // tokens (random ids) or words (text file)
  int64_t prompt_len_max = 0;  // > prompt_len: uniform in [prompt_len, prompt_len_max]
  int64_t output_len = 128;
  int64_t output_len_max = 0;     // > output_len: uniform in [output_len, output_len_max]
  std::string dataset;            // text file; documents split at <|endoftext|> or blank lines
  std::string policies = "FULL";  // comma list of NAME[:BUDGET], cycled over the requests
  double temperature = 0;
  bool ignore_eos = true;
  double request_rate = 0;  // requests/s, Poisson arrivals; 0: all at once
  uint64_t seed = 0;
};

struct PlannedRequest {
  v1::GenerateRequest request;
  double send_at_s = 0;  // from the start of the run
};

// INVALID_ARGUMENT for a bad policy list, an unreadable or empty dataset, or bad lengths.
absl::StatusOr<std::vector<PlannedRequest>> BuildWorkload(const WorkloadOptions& options,
                                                          int64_t vocab_size);

}  // namespace kvserve::bench
