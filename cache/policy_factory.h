// Turns a request's CacheSpec into its CachePolicy: the one place that knows every policy.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <memory>

#include "cache/cache_policy.h"
#include "cache/cache_spec.h"

namespace kvserve {

// What a policy may need to know of its request besides the spec.
struct PolicyContext {
  int64_t prompt_tokens = 0;
  int64_t max_new_tokens = 0;
};

// Returns INVALID_ARGUMENT naming the field for a bad spec, UNIMPLEMENTED naming a policy that is
// not served.
absl::StatusOr<std::unique_ptr<CachePolicy>> MakeCachePolicy(const CacheSpec& spec,
                                                              const PolicyContext& context);

}  // namespace kvserve
