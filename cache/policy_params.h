// Reading a CacheSpec's named parameters for one policy: refuses unknown names, non-integral values
// for integer parameters and out-of-range values, each with an INVALID_ARGUMENT naming the field
// ("cache.<policy>.<param>"). Torch-free; used by each policy's Resolve().
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "cache/cache_spec.h"

namespace kvserve {

class PolicyParams {
 public:
  // `policy` is the field prefix under "cache." ("cascading"). Refuses a parameter of `spec` that
  // is not in `known`, and a budget below 1.
  static absl::StatusOr<PolicyParams> Read(const CacheSpec& spec, std::string policy,
                                           std::vector<std::string> known);

  int64_t budget() const { return spec_.budget_tokens; }
  bool Has(const std::string& name) const { return spec_.params.count(name) != 0; }
  // "cache.<policy>.<name>".
  std::string Field(const std::string& name) const;
  // The field to blame for a derived constraint: the first of `names` the request set, else
  // "cache.budget_tokens" (the defaults follow the budget).
  std::string Blame(std::initializer_list<std::string> names) const;

  // The integer parameter `name` (or `fallback` when absent), checked to lie in [min, max].
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback, int64_t min,
                              int64_t max) const;
  // The real parameter `name` (or `fallback`), checked to lie in (min, max] (`min_open`) or
  // [min, max].
  absl::StatusOr<double> Real(const std::string& name, double fallback, double min, double max,
                              bool min_open) const;

 private:
  PolicyParams(const CacheSpec& spec, std::string policy) : spec_(spec), policy_(policy) {}
  CacheSpec spec_;
  std::string policy_;
};

// INVALID_ARGUMENT "<field> <message>".
absl::Status FieldError(const std::string& field, const std::string& message);

}  // namespace kvserve
