// Quality of cache policies against the full cache under teacher forcing: a token stream is fed one
// token per step to the full cache and to every policy at once (one batched forward per token), and
// each policy's next-token distributions are compared with the full cache's.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cache/cache_spec.h"
#include "model/llama_model.h"

namespace kvserve {

struct QualityRow {
  std::string policy;  // CachePolicyName, "FULL" for the reference itself
  int64_t budget_tokens = 0;
  int64_t length = 0;         // tokens of the stream scored (BOS first)
  double perplexity = 0;      // exp(mean NLL of tokens 1..length-1)
  double mean_kl = 0;         // mean over positions of KL(full || policy), nats
  double top1_agreement = 0;  // fraction of positions where both argmaxes agree
  int64_t peak_tokens = 0;    // the most tokens the policy held in a layer
};

struct QualityOptions {
  std::vector<CacheSpec> policies;  // compared with FULL, which is always run
  std::vector<int64_t> lengths;     // report the first N tokens of the stream for each N
  // Where a policy that compresses the prompt once (SnapKV) sees the prompt end: the stream's first
  // `prompt_tokens` tokens (capped to the stream) count as its prompt.
  int64_t prompt_tokens = 256;
};

// Runs the stream once, up to the longest length, and reports every (policy, length), FULL first.
// INVALID_ARGUMENT for a bad spec or a stream shorter than a requested length.
absl::StatusOr<std::vector<QualityRow>> EvaluateQuality(LlamaModel& model,
                                                        std::span<const int32_t> stream,
                                                        const QualityOptions& options);

std::string QualityMarkdown(const std::vector<QualityRow>& rows);
std::string QualityCsv(const std::vector<QualityRow>& rows);

}  // namespace kvserve
