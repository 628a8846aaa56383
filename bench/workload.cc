#include "bench/workload.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>

#include <fstream>
#include <sstream>

namespace kvserve::bench {
namespace {

struct PolicyChoice {
  v1::CacheConfig::CachePolicy policy = v1::CacheConfig::FULL;
  int64_t budget = 0;
};

absl::StatusOr<std::vector<PolicyChoice>> ParsePolicies(const std::string& list) {
  std::vector<PolicyChoice> out;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    std::vector<std::string> parts = absl::StrSplit(item, ':');
    PolicyChoice c;
    if (!v1::CacheConfig::CachePolicy_Parse(parts[0], &c.policy)) {
      return absl::InvalidArgumentError(absl::StrCat("--policies: unknown policy ", parts[0]));
    }
    if (parts.size() > 2 || (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &c.budget))) {
      return absl::InvalidArgumentError(absl::StrCat("--policies: bad item ", std::string(item)));
    }
    out.push_back(c);
  }
  if (out.empty()) return absl::InvalidArgumentError("--policies is empty");
  return out;
}

absl::StatusOr<std::vector<std::string>> ReadDocuments(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--dataset: cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  std::vector<std::string> docs;
  for (absl::string_view part : absl::StrSplit(all, "<|endoftext|>")) {
    for (absl::string_view doc : absl::StrSplit(part, "\n\n")) {
      doc = absl::StripAsciiWhitespace(doc);
      if (!doc.empty()) docs.emplace_back(doc);
    }
  }
  if (docs.empty())
    return absl::InvalidArgumentError(absl::StrCat("--dataset: ", path, " is empty"));
  return docs;
}

// The first `words` words of `doc`.
std::string FirstWords(const std::string& doc, int64_t words) {
  std::vector<absl::string_view> all = absl::StrSplit(doc, ' ', absl::SkipEmpty());
  if (static_cast<int64_t>(all.size()) > words) all.resize(static_cast<size_t>(words));
  return absl::StrJoin(all, " ");
}

int64_t Draw(int64_t lo, int64_t hi, std::mt19937_64& rng) {
  if (hi <= lo) return lo;
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

}  // namespace

absl::StatusOr<std::vector<PlannedRequest>> BuildWorkload(const WorkloadOptions& o,
                                                          int64_t vocab_size) {
  if (o.num_requests < 1 || o.prompt_len < 1 || o.output_len < 1) {
    return absl::InvalidArgumentError("--num-requests, --prompt-len and --output-len must be >= 1");
  }
  auto policies = ParsePolicies(o.policies);
  if (!policies.ok()) return policies.status();
  std::vector<std::string> docs;
  if (!o.dataset.empty()) {
    auto read = ReadDocuments(o.dataset);
    if (!read.ok()) return read.status();
    docs = std::move(*read);
  }
  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.request_rate > 0 ? o.request_rate : 1.0);
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(vocab_size - 1));
  std::vector<PlannedRequest> out;
  double t = 0;
  for (int64_t i = 0; i < o.num_requests; ++i) {
    PlannedRequest p;
    v1::GenerateRequest& r = p.request;
    r.set_request_id(absl::StrCat("bench-", i));
    const int64_t prompt_len = Draw(o.prompt_len, o.prompt_len_max, rng);
    if (docs.empty()) {
      r.add_prompt_ids(1);  // BOS of Llama-family tokenizers
      for (int64_t k = 1; k < prompt_len; ++k) r.add_prompt_ids(token(rng));
    } else {
      r.set_prompt(FirstWords(docs[static_cast<size_t>(i) % docs.size()], prompt_len));
    }
    v1::SamplingParams* s = r.mutable_sampling();
    s->set_max_new_tokens(static_cast<int32_t>(Draw(o.output_len, o.output_len_max, rng)));
    s->set_temperature(static_cast<float>(o.temperature));
    s->set_seed(o.seed + static_cast<uint64_t>(i));
    s->set_ignore_eos(o.ignore_eos);
    const PolicyChoice& c = (*policies)[static_cast<size_t>(i) % policies->size()];
    r.mutable_cache()->set_policy(c.policy);
    r.mutable_cache()->set_budget_tokens(c.budget);
    if (o.request_rate > 0 && i > 0) t += gap(rng);
    p.send_at_s = t;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace kvserve::bench
