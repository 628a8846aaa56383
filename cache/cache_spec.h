// What a request asks of its KV cache: a policy, a token budget and the policy's named parameters.
// Torch-free: the server builds it from the API and the engine turns it into a CachePolicy.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvserve {

enum class CachePolicyKind { kFull, kStreamingLlm, kH2o, kSnapKv, kCascading, kTreeKv, kFreqKv };

// The API's upper-case name of a policy ("FULL", "STREAMING_LLM", ...).
std::string CachePolicyName(CachePolicyKind kind);
// The kind CachePolicyName gives `name`, or nullopt.
std::optional<CachePolicyKind> CachePolicyKindNamed(std::string_view name);

struct CacheSpec {
  CachePolicyKind kind = CachePolicyKind::kFull;
  // Tokens kept per (layer, KV head) between steps. Ignored by kFull.
  int64_t budget_tokens = 0;
  // Policy parameters by name (policies.md; e.g. "sink_tokens", "ema_decay"); a parameter left out
  // takes the policy's default for the budget. Integer parameters must hold integral values.
  std::map<std::string, double> params;
};

// One parameter of a policy, for GetModelInfo and --help.
struct PolicyParameter {
  std::string name;  // the key in CacheSpec::params and the API's field name
  std::string description;
  std::string default_rule;  // e.g. "4", "budget - sink_tokens"
};

struct PolicyDescription {
  CachePolicyKind kind = CachePolicyKind::kFull;
  bool served = false;
  std::string summary;
  std::vector<PolicyParameter> parameters;
};

}  // namespace kvserve
