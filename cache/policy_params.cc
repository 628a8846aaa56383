#include "cache/policy_params.h"

#include <absl/strings/str_cat.h>

#include <cmath>

namespace kvserve {

absl::Status PolicyParams::CheckKnown(std::initializer_list<const char*> known) const {
  std::string unknown, names;
  for (const char* name : known) names = names.empty() ? name : absl::StrCat(names, ", ", name);
  for (const auto& [name, value] : spec_.params) {
    bool found = false;
    for (const char* k : known) found = found || name == k;
    if (!found) unknown = absl::StrCat(unknown, unknown.empty() ? "" : ", ", Field(name));
  }
  if (unknown.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown cache parameter(s) ", unknown, "; cache.", policy_field_,
                   " takes: ", names.empty() ? std::string("none") : names));
}

absl::StatusOr<int64_t> PolicyParams::Int(const std::string& name, int64_t fallback) const {
  auto it = spec_.params.find(name);
  if (it == spec_.params.end()) return fallback;
  const double value = it->second;
  // 2^53: every integer up to it is exact in a double, and no budget comes near it.
  constexpr double kLimit = 9007199254740992.0;
  if (!std::isfinite(value) || std::floor(value) != value || std::fabs(value) > kLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(name), " must be an integer, got ", value));
  }
  return static_cast<int64_t>(value);
}

std::string PolicyParams::Field(const std::string& name) const {
  return absl::StrCat("cache.", policy_field_, ".", name);
}

absl::Status CheckBudget(const CacheSpec& spec, int64_t minimum, const std::string& why) {
  if (spec.budget_tokens >= minimum) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("cache.budget_tokens must be >= ", minimum, " (",
                                                 why, "), got ", spec.budget_tokens));
}

absl::Status CheckAtLeast(const std::string& field, int64_t value, int64_t minimum) {
  if (value >= minimum) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " must be >= ", minimum, ", got ", value));
}

}  // namespace kvserve
