#include "tools/quality_eval.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "cache/policy_factory.h"

namespace kvserve {
namespace {

// One compared cache: its spec, its policy and cache, and running sums.
struct Lane {
  CacheSpec spec;
  std::unique_ptr<CachePolicy> policy;
  std::unique_ptr<KvCache> cache;
  double nll = 0, kl = 0;
  int64_t agree = 0;
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
    const double positions = static_cast<double>(length - 1);
    for (const Lane& lane : lanes) {
      rows.push_back({CachePolicyName(lane.spec.kind), lane.spec.budget_tokens, length,
                      std::exp(lane.nll / positions), lane.kl / positions, lane.agree / positions,
                      lane.policy->stats().peak_tokens});
    }
  };
  std::vector<SequenceInput> batch(lanes.size());
  for (int64_t t = 0; t + 1 < total; ++t) {
    for (size_t i = 0; i < lanes.size(); ++i) {
      batch[i] = {lanes[i].cache.get(), lanes[i].policy.get(), stream.subspan(t, 1)};
    }
    auto log_probs = at::log_softmax(model.Forward(batch).to(at::kDouble), -1).cpu();
    auto probs_full = log_probs[0].exp();
    const int64_t next = stream[t + 1];
    const int64_t full_top = log_probs[0].argmax().item<int64_t>();
    auto kl = (probs_full.unsqueeze(0) * (log_probs[0].unsqueeze(0) - log_probs)).sum(-1);
    auto top = log_probs.argmax(-1);
    for (size_t i = 0; i < lanes.size(); ++i) {
      lanes[i].nll -= log_probs[i][next].item<double>();
      lanes[i].kl += kl[i].item<double>();
      lanes[i].agree += top[i].item<int64_t>() == full_top;
    }
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
