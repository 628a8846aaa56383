#include "cache/policy_factory.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

#include "cache/cascading_policy.h"
#include "cache/freqkv_policy.h"
#include "cache/full_policy.h"
#include "cache/h2o_policy.h"
#include "cache/snapkv_policy.h"
#include "cache/streaming_llm_policy.h"
#include "cache/treekv_policy.h"

namespace kvserve {
namespace {

// Resolves the policy's parameters (defaults, validation) with its static Resolve() and builds it.
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
    case CachePolicyKind::kCascading:
      return Make<CascadingPolicy>(spec, context);
    case CachePolicyKind::kTreeKv:
      return Make<TreeKvPolicy>(spec, context);
    case CachePolicyKind::kFreqKv:
      return Make<FreqKvPolicy>(spec, context);
  }
  return absl::UnimplementedError(
      absl::StrCat("cache.policy ", CachePolicyName(spec.kind), " is not served yet"));
}

std::vector<PolicyDescription> DescribeCachePolicies() {
  return {FullPolicy::Describe(),   StreamingLlmPolicy::Describe(), H2oPolicy::Describe(),
          SnapKvPolicy::Describe(), CascadingPolicy::Describe(),    TreeKvPolicy::Describe(),
          FreqKvPolicy::Describe()};
}

}  // namespace kvserve
