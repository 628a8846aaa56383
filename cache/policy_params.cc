#include "cache/policy_params.h"

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <cmath>

namespace kvserve {

absl::Status FieldError(const std::string& field, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", message));
}

absl::StatusOr<PolicyParams> PolicyParams::Read(const CacheSpec& spec, std::string policy,
                                                std::vector<std::string> known) {
  PolicyParams params(spec, std::move(policy));
  if (spec.budget_tokens < 1) {
    return FieldError("cache.budget_tokens",
                      absl::StrCat("must be >= 1 for ", CachePolicyName(spec.kind), ", got ",
                                   spec.budget_tokens));
  }
  for (const auto& [name, value] : spec.params) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string names;
      for (const std::string& k : known) names = absl::StrCat(names, names.empty() ? "" : ", ", k);
      return FieldError(params.Field(name),
                        absl::StrCat("is not a parameter of ", CachePolicyName(spec.kind),
                                     " (known: ", names, ")"));
    }
  }
  return params;
}

std::string PolicyParams::Field(const std::string& name) const {
  return absl::StrCat("cache.", policy_, ".", name);
}

std::string PolicyParams::Blame(std::initializer_list<std::string> names) const {
  for (const std::string& name : names) {
    if (Has(name)) return Field(name);
  }
  return "cache.budget_tokens";
}

absl::StatusOr<int64_t> PolicyParams::Int(const std::string& name, int64_t fallback, int64_t min,
                                          int64_t max) const {
  auto it = spec_.params.find(name);
  if (it == spec_.params.end()) return fallback;
  const double value = it->second;
  if (!std::isfinite(value) || value != std::floor(value)) {
    return FieldError(Field(name), absl::StrCat("must be an integer, got ", value));
  }
  if (value < static_cast<double>(min) || value > static_cast<double>(max)) {
    return FieldError(Field(name), absl::StrCat("must be in [", min, ", ", max, "], got ", value));
  }
  return static_cast<int64_t>(value);
}

absl::StatusOr<double> PolicyParams::Real(const std::string& name, double fallback, double min,
                                          double max, bool min_open) const {
  auto it = spec_.params.find(name);
  if (it == spec_.params.end()) return fallback;
  const double value = it->second;
  const bool low = min_open ? value > min : value >= min;
  if (!std::isfinite(value) || !low || value > max) {
    return FieldError(Field(name), absl::StrCat("must be in ", min_open ? "(" : "[", min, ", ", max,
                                                "], got ", value));
  }
  return value;
}

}  // namespace kvserve
