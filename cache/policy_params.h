// Reading one policy's CacheSpec::params: unknown names refused, integers checked integral, every
// message naming the field as the API does ("cache.h2o.heavy_tokens"). Torch-free.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "cache/cache_spec.h"

namespace kvserve {

class PolicyParams {
 public:
  // `policy_field`: the policy's name in field paths ("streaming_llm", "h2o", "snapkv").
  PolicyParams(const CacheSpec& spec, std::string policy_field)
      : spec_(spec), policy_field_(std::move(policy_field)) {}

  // INVALID_ARGUMENT naming every parameter of the spec that is not in `known`.
  absl::Status CheckKnown(std::initializer_list<const char*> known) const;
  bool Has(const std::string& name) const { return spec_.params.count(name) > 0; }
  // The value of integer parameter `name`, or `fallback` when the spec leaves it out.
  // INVALID_ARGUMENT when the value is not integral.
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback) const;
  // "cache.<policy>.<name>".
  std::string Field(const std::string& name) const;

 private:
  const CacheSpec& spec_;
  std::string policy_field_;
};

// INVALID_ARGUMENT "cache.budget_tokens must be >= minimum (why), got B" when budget < minimum.
absl::Status CheckBudget(const CacheSpec& spec, int64_t minimum, const std::string& why);

// INVALID_ARGUMENT "<field> must be >= minimum, got value" when value < minimum.
absl::Status CheckAtLeast(const std::string& field, int64_t value, int64_t minimum);

}  // namespace kvserve
