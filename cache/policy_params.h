// Reading a CacheSpec's named parameters for one policy: refuses unknown names, non-integral values
// for integer parameters, out-of-range values and budgets below a policy's minimum, each with an
// INVALID_ARGUMENT whose message starts with the field ("cache.<policy>.<param> must be ...",
// "cache.budget_tokens must be ..."). Torch-free; used by each policy's Resolve(), and by other
// named parameter sets without a budget (CritiPrefill's "prefill.critiprefill.<param>").
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "cache/cache_spec.h"

namespace kvserve {

class PolicyParams {
 public:
  static constexpr int64_t kNoMin = std::numeric_limits<int64_t>::min();
  static constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

  // `policy` is the field prefix under "cache." ("cascading"). Refuses, naming every one, the
  // parameters of `spec` that are not in `known`, and a budget below 1.
  static absl::StatusOr<PolicyParams> Read(const CacheSpec& spec, std::string policy,
                                           std::vector<std::string> known);
  // The same for a parameter set without a budget: fields are "<prefix>.<name>", and `owner` names
  // the set in the message for unknown names ("CRITIPREFILL").
  static absl::StatusOr<PolicyParams> ReadFields(const std::map<std::string, double>& params,
                                                 std::string prefix, const std::string& owner,
                                                 const std::vector<std::string>& known);

  int64_t budget() const { return spec_.budget_tokens; }
  bool Has(const std::string& name) const { return spec_.params.count(name) != 0; }
  // "cache.<policy>.<name>" (or "<prefix>.<name>").
  std::string Field(const std::string& name) const;
  // The field to blame for a derived constraint: the first of `names` the request set, else
  // "cache.budget_tokens" (the defaults follow the budget).
  std::string Blame(std::initializer_list<std::string> names) const;

  // INVALID_ARGUMENT "cache.budget_tokens must be >= minimum (why), got B" when the budget is
  // below `minimum` (the parts a policy protects, §0.5 item 6).
  absl::Status CheckBudget(int64_t minimum, const std::string& why) const;

  // The integer parameter `name` (or `fallback` when absent), checked integral (|value| <= 2^53)
  // and within [min, max]; kNoMin / kNoMax leave a side open ("must be >= 1, got 0").
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback, int64_t min = kNoMin,
                              int64_t max = kNoMax) const;
  // The real parameter `name` (or `fallback`), checked to lie in (min, max] (`min_open`) or
  // [min, max].
  absl::StatusOr<double> Real(const std::string& name, double fallback, double min, double max,
                              bool min_open) const;

 private:
  PolicyParams(const CacheSpec& spec, std::string prefix)
      : spec_(spec), prefix_(std::move(prefix)) {}
  // Refuses, naming every one, the parameters not in `known`.
  absl::Status CheckKnown(const std::string& owner, const std::vector<std::string>& known) const;
  CacheSpec spec_;
  std::string prefix_;  // "cache.<policy>"
};

// INVALID_ARGUMENT "<field> <message>".
absl::Status FieldError(const std::string& field, const std::string& message);

}  // namespace kvserve
