// Turns a request's CacheSpec into its CachePolicy: the one place that knows every policy.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"

namespace kvserve {

// What a policy may need to know of its request besides the spec.
struct PolicyContext {
  int64_t prompt_tokens = 0;
  int64_t max_new_tokens = 0;
};

// Resolves defaults and validates the spec (policies.md §0.5 items 5, 6, 19): INVALID_ARGUMENT
// naming the field ("cache.budget_tokens", "cache.streaming_llm.sink_tokens", ...) for a bad spec,
// UNIMPLEMENTED naming a policy that is not served. Creates no tensors: callable on any thread.
absl::StatusOr<std::unique_ptr<CachePolicy>> MakeCachePolicy(const CacheSpec& spec,
                                                             const PolicyContext& context);

// Every policy kind with whether it is served, its parameters and their defaults.
std::vector<PolicyDescription> DescribeCachePolicies();

}  // namespace kvserve
