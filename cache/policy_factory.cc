#include "cache/policy_factory.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

#include "cache/full_policy.h"
#include "cache/h2o_policy.h"
#include "cache/snapkv_policy.h"
#include "cache/streaming_llm_policy.h"

namespace kvserve {
namespace {

// Resolves the policy's parameters (defaults, validation) and builds it.
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
    case CachePolicyKind::kStreamingLlm:
      return Make<StreamingLlmPolicy>(spec, context);
    case CachePolicyKind::kH2o:
      return Make<H2oPolicy>(spec, context);
    case CachePolicyKind::kSnapKv:
      return Make<SnapKvPolicy>(spec, context);
    default:
      return absl::UnimplementedError(
          absl::StrCat("cache.policy ", CachePolicyName(spec.kind), " is not served yet"));
  }
}

std::vector<PolicyDescription> DescribeCachePolicies() {
  std::vector<PolicyDescription> policies = {FullPolicy::Describe(), StreamingLlmPolicy::Describe(),
                                             H2oPolicy::Describe(), SnapKvPolicy::Describe()};
  for (CachePolicyKind kind :
       {CachePolicyKind::kCascading, CachePolicyKind::kTreeKv, CachePolicyKind::kFreqKv}) {
    policies.push_back({kind, false, "not served yet", {}});
  }
  return policies;
}

}  // namespace kvserve
