// Quality of CritiPrefill against dense prefill (prefill_and_heads.md §1.4: an approximation of the
// whole prefill, measured on the continuation). For each prompt length, cache policy and held-out
// window, the window's first P tokens are prefilled once densely and once per CritiPrefill
// setting, chunked as the engine chunks them, under that policy; then the next C tokens are fed one
// per step (teacher forcing) to all of them at once, and each CritiPrefill lane's next-token
// distributions are compared with the dense lane's of the same policy.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cache/cache_spec.h"
#include "model/criti_prefill_params.h"
#include "model/llama_model.h"

namespace kvserve {

struct PrefillQualityOptions {
  std::vector<CacheSpec> policies;           // each run dense and with every setting below
  std::vector<CritiPrefillParams> settings;  // compared with dense prefill
  std::vector<int64_t> prompt_tokens;        // prompt lengths P
  int64_t continuation_tokens = 128;         // C: positions scored after the prompt
  int64_t prefill_chunk = 512;               // most prompt tokens per forward, as the engine's
};

struct PrefillQualityRow {
  std::string policy;  // CachePolicyName
  int64_t budget_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t kept_blocks = 0;  // the CritiPrefill setting's k; 0 for dense prefill
  // Over the continuation's C positions of every window: exp(mean NLL), mean KL(dense prefill ‖
  // this lane) in nats, and how often both argmaxes agree.
  double perplexity = 0;
  double mean_kl = 0;
  double top1_agreement = 0;
  double skipped = 0;  // the fraction of dense prefill's attention pairs the prefill skipped
};

// Rows for every (prompt length, policy): dense prefill first, then each setting. INVALID_ARGUMENT
// for a bad spec or setting, or a window shorter than the longest P + C.
absl::StatusOr<std::vector<PrefillQualityRow>> EvaluatePrefillQuality(
    LlamaModel& model, std::span<const std::vector<int32_t>> windows,
    const PrefillQualityOptions& options);

std::string PrefillQualityMarkdown(const std::vector<PrefillQualityRow>& rows);
std::string PrefillQualityCsv(const std::vector<PrefillQualityRow>& rows);

}  // namespace kvserve
