// What a request asks of its KV cache: a policy, a token budget and the policy's named parameters.
// Torch-free: the server builds it from the API and the engine turns it into a CachePolicy.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace kvserve {

enum class CachePolicyKind { kFull, kStreamingLlm, kH2o, kSnapKv, kCascading, kTreeKv, kFreqKv };

// The API's upper-case name of a policy ("FULL", "STREAMING_LLM", ...).
std::string CachePolicyName(CachePolicyKind kind);

struct CacheSpec {
  CachePolicyKind kind = CachePolicyKind::kFull;
  // Tokens kept per (layer, KV head) between steps. Ignored by kFull.
  int64_t budget_tokens = 0;
  // Policy parameters by name; a parameter left out takes the policy's default for the budget.
  std::map<std::string, int64_t> params;
};

}  // namespace kvserve
