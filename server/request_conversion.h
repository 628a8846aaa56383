// Generate requests from the API to the engine: every field checked first (INVALID_ARGUMENT naming
// the field and its limit, before anything is submitted), then converted to a GenerationRequest.
// Pure functions of their arguments: callable from any thread, testable without a server.
#pragma once

#include <absl/status/status.h>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kvserve/v1/generation.pb.h"
#include "scheduler/engine.h"

namespace kvserve {

// What a request is checked against: the model's limits and the server's.
struct RequestLimits {
  int64_t vocab_size = 0;
  int64_t context_length = 0;
  int32_t max_new_tokens_limit = 0;
};

// Checks every field that needs no tokenizer. Budgets of compressed policies are only checked to be
// in [1, context]; their finer rules (policies.md §0.5 item 6) belong to the engine's cache
// factory, and CritiPrefill's parameters (beyond being set only with mode CRITIPREFILL) to the
// engine's Submit.
absl::Status ValidateGenerateRequest(const v1::GenerateRequest& request,
                                     const RequestLimits& limits);

// Checks the prompt's ids (given or tokenized): non-empty, inside the vocabulary, and under FULL
// short enough that prompt + max_new_tokens fits the context.
absl::Status ValidatePromptIds(std::span<const int32_t> ids, const v1::GenerateRequest& request,
                               const RequestLimits& limits);

// The engine's request for a validated request and its prompt ids; no deadline set.
GenerationRequest ToGenerationRequest(const v1::GenerateRequest& request,
                                      std::vector<int32_t> prompt_ids);

// The parameters set in the request's params message (cache or CritiPrefill), keyed by their proto
// field names, enums as their numbers and booleans as 0/1: CacheSpec::params / PrefillSpec::params.
std::map<std::string, double> ParamsFromProto(const google::protobuf::Message& params);

// Unset fields with documented non-zero defaults, resolved.
int32_t MaxNewTokensOf(const v1::SamplingParams& sampling);  // 16
SamplingParams ToSamplingParams(const v1::SamplingParams& sampling);
CachePolicyKind ToCachePolicyKind(v1::CacheConfig::CachePolicy policy);
v1::CacheConfig::CachePolicy ToProtoCachePolicy(CachePolicyKind kind);

}  // namespace kvserve
