#include "cache/policy_factory.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

#include "cache/full_policy.h"

namespace kvserve {

absl::StatusOr<std::unique_ptr<CachePolicy>> MakeCachePolicy(const CacheSpec& spec,
                                                             const PolicyContext& context) {
  switch (spec.kind) {
    case CachePolicyKind::kFull:
      return std::make_unique<FullPolicy>(context.prompt_tokens + context.max_new_tokens);
    default:
      return absl::UnimplementedError(
          absl::StrCat("cache.policy ", CachePolicyName(spec.kind), " is not served yet"));
  }
}

std::vector<PolicyDescription> DescribeCachePolicies() {
  std::vector<PolicyDescription> policies = {FullPolicy::Describe()};
  for (CachePolicyKind kind :
       {CachePolicyKind::kStreamingLlm, CachePolicyKind::kH2o, CachePolicyKind::kSnapKv,
        CachePolicyKind::kCascading, CachePolicyKind::kTreeKv, CachePolicyKind::kFreqKv}) {
    policies.push_back({kind, false, "not served yet", {}});
  }
  return policies;
}

}  // namespace kvserve
