#include "cache/policy_params.h"

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace kvserve {

absl::Status FieldError(const std::string& field, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", message));
}

absl::StatusOr<PolicyParams> PolicyParams::Read(const CacheSpec& spec, std::string policy,
                                                std::vector<std::string> known) {
  PolicyParams params(spec, absl::StrCat("cache.", policy));
  if (auto s = params.CheckKnown(CachePolicyName(spec.kind), known); !s.ok()) return s;
  if (auto s = params.CheckBudget(1, CachePolicyName(spec.kind)); !s.ok()) return s;
  return params;
}

absl::StatusOr<PolicyParams> PolicyParams::ReadFields(const std::map<std::string, double>& params,
                                                      std::string prefix, const std::string& owner,
                                                      const std::vector<std::string>& known) {
  PolicyParams reader({CachePolicyKind::kFull, 0, params}, std::move(prefix));
  if (auto s = reader.CheckKnown(owner, known); !s.ok()) return s;
  return reader;
}

absl::Status PolicyParams::CheckKnown(const std::string& owner,
                                      const std::vector<std::string>& known) const {
  std::vector<std::string> unknown;
  for (const auto& [name, value] : spec_.params) {
    if (std::find(known.begin(), known.end(), name) == known.end()) unknown.push_back(Field(name));
  }
  if (unknown.empty()) return absl::OkStatus();
  return FieldError(
      absl::StrJoin(unknown, ", "),
      absl::StrCat(unknown.size() == 1 ? "is not a parameter" : "are not parameters", " of ", owner,
                   " (known: ", known.empty() ? "none" : absl::StrJoin(known, ", "), ")"));
}

std::string PolicyParams::Field(const std::string& name) const {
  return absl::StrCat(prefix_, ".", name);
}

std::string PolicyParams::Blame(std::initializer_list<std::string> names) const {
  for (const std::string& name : names) {
    if (Has(name)) return Field(name);
  }
  return "cache.budget_tokens";
}

absl::Status PolicyParams::CheckBudget(int64_t minimum, const std::string& why) const {
  if (budget() >= minimum) return absl::OkStatus();
  return FieldError("cache.budget_tokens",
                    absl::StrCat("must be >= ", minimum, " (", why, "), got ", budget()));
}

absl::StatusOr<int64_t> PolicyParams::Int(const std::string& name, int64_t fallback, int64_t min,
                                          int64_t max) const {
  auto it = spec_.params.find(name);
  if (it == spec_.params.end()) return fallback;
  const double value = it->second;
  // 2^53: every integer up to it is exact in a double, and no parameter comes near it.
  constexpr double kLimit = 9007199254740992.0;
  if (!std::isfinite(value) || std::floor(value) != value || std::fabs(value) > kLimit) {
    return FieldError(Field(name), absl::StrCat("must be an integer, got ", value));
  }
  const auto integer = static_cast<int64_t>(value);
  if (integer >= min && integer <= max) return integer;
  if (max == kNoMax)
    return FieldError(Field(name), absl::StrCat("must be >= ", min, ", got ", integer));
  if (min == kNoMin)
    return FieldError(Field(name), absl::StrCat("must be <= ", max, ", got ", integer));
  return FieldError(Field(name), absl::StrCat("must be in [", min, ", ", max, "], got ", integer));
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
