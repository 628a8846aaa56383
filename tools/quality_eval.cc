#include "tools/quality_eval.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "cache/policy_factory.h"
#include "tools/lane_scores.h"

namespace kvserve {
namespace {

// One compared cache: its spec, its policy and cache, and running sums.
struct Lane {
  CacheSpec spec;
  std::unique_ptr<CachePolicy> policy;
  std::unique_ptr<KvCache> cache;
};

}  // namespace

absl::StatusOr<std::vector<QualityRow>> EvaluateQuality(LlamaModel& model,
                                                        std::span<const int32_t> stream,
                                                        const QualityOptions& options) {
  if (options.lengths.empty()) return absl::InvalidArgumentError("no lengths to evaluate");
  const int64_t total = *std::max_element(options.lengths.begin(), options.lengths.end());
  if (total < 2 || total > static_cast<int64_t>(stream.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the stream has ", stream.size(), " tokens; lengths must be in [2, that]"));
  }
  std::vector<Lane> lanes(1 + options.policies.size());
  std::vector<LaneScore> scores(lanes.size());
  for (size_t i = 1; i < lanes.size(); ++i) lanes[i].spec = options.policies[i - 1];
  const PolicyContext context{std::min(options.prompt_tokens, total), total};
  for (Lane& lane : lanes) {
    auto policy = MakeCachePolicy(lane.spec, context);
    if (!policy.ok()) return policy.status();
    lane.policy = std::move(*policy);
    lane.cache = std::make_unique<KvCache>(model.cache_shape(), lane.policy->Capacity(1));
  }

  std::vector<QualityRow> rows;
  auto report = [&](int64_t length) {
    for (size_t i = 0; i < lanes.size(); ++i) {
      const LaneScore& s = scores[i];
      rows.push_back({CachePolicyName(lanes[i].spec.kind), lanes[i].spec.budget_tokens, length,
                      s.perplexity(), s.mean_kl(), s.top1_agreement(),
                      lanes[i].policy->stats().peak_tokens});
    }
  };
  std::vector<SequenceInput> batch(lanes.size());
  for (int64_t t = 0; t + 1 < total; ++t) {
    for (size_t i = 0; i < lanes.size(); ++i) {
      batch[i] = {lanes[i].cache.get(), lanes[i].policy.get(), stream.subspan(t, 1)};
    }
    AddPosition(model.Forward(batch), stream[t + 1], scores);
    if (std::count(options.lengths.begin(), options.lengths.end(), t + 2)) report(t + 2);
  }
  return rows;
}

std::string QualityMarkdown(const std::vector<QualityRow>& rows) {
  std::string out =
      "| policy | budget | length | perplexity | mean KL(full‖policy) | top-1 agreement | peak "
      "tokens |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n";
  for (const QualityRow& r : rows) {
    absl::StrAppend(
        &out, absl::StrFormat("| %s | %s | %d | %.3f | %.4f | %.3f | %d |\n", r.policy,
                              r.policy == "FULL" ? "—" : absl::StrCat(r.budget_tokens), r.length,
                              r.perplexity, r.mean_kl, r.top1_agreement, r.peak_tokens));
  }
  return out;
}

std::string QualityCsv(const std::vector<QualityRow>& rows) {
  std::string out = "policy,budget,length,perplexity,mean_kl,top1_agreement,peak_tokens\n";
  for (const QualityRow& r : rows) {
    absl::StrAppend(
        &out, absl::StrFormat("%s,%d,%d,%.6f,%.6f,%.6f,%d\n", r.policy, r.budget_tokens, r.length,
                              r.perplexity, r.mean_kl, r.top1_agreement, r.peak_tokens));
  }
  return out;
}

}  // namespace kvserve
