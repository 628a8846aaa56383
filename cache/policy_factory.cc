#include "cache/policy_factory.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

#include "cache/cascading_policy.h"
#include "cache/freqkv_policy.h"
#include "cache/full_policy.h"
#include "cache/treekv_policy.h"

namespace kvserve {
namespace {

// Resolves a policy's parameters with its static Resolve() and constructs it.
template <typename Policy>
absl::StatusOr<std::unique_ptr<CachePolicy>> Make(const CacheSpec& spec,
                                                  const PolicyContext& context) {
  auto params = Policy::Resolve(spec, context);
  if (!params.ok()) return params.status();
  return std::make_unique<Policy>(*params);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CachePolicy>> MakeCachePolicy(const CacheSpec& spec,
                                                             const PolicyContext& context) {
  switch (spec.kind) {
    case CachePolicyKind::kFull:
      return std::make_unique<FullPolicy>(context.prompt_tokens + context.max_new_tokens);
    case CachePolicyKind::kCascading:
      return Make<CascadingPolicy>(spec, context);
    case CachePolicyKind::kTreeKv:
      return Make<TreeKvPolicy>(spec, context);
    case CachePolicyKind::kFreqKv:
      return Make<FreqKvPolicy>(spec, context);
    default:
      return absl::UnimplementedError(
          absl::StrCat("cache.policy ", CachePolicyName(spec.kind), " is not served yet"));
  }
}

std::vector<PolicyDescription> DescribeCachePolicies() {
  std::vector<PolicyDescription> policies = {FullPolicy::Describe(), CascadingPolicy::Describe(),
                                             TreeKvPolicy::Describe(), FreqKvPolicy::Describe()};
  for (CachePolicyKind kind :
       {CachePolicyKind::kStreamingLlm, CachePolicyKind::kH2o, CachePolicyKind::kSnapKv}) {
    policies.push_back({kind, false, "not served yet", {}});
  }
  return policies;
}

}  // namespace kvserve
