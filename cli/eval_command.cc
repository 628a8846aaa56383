// kvserve-cli eval: the quality of cache policies against the full cache on held-out text, streamed
// token by token (teacher forcing), as a markdown table and a CSV.
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <fstream>
#include <iostream>

#include "cache/policy_factory.h"
#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "tools/quality_eval.h"
#include "tools/story_stream.h"

namespace kvserve {
namespace {

absl::StatusOr<std::vector<int64_t>> ParseInts(const std::string& list, const std::string& option) {
  std::vector<int64_t> values;
  for (const auto& part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", option, ": '", std::string(part), "' is not a positive integer"));
    }
    values.push_back(v);
  }
  return values;
}

absl::StatusOr<std::vector<CachePolicyKind>> ParsePolicies(const std::string& list) {
  std::vector<CachePolicyKind> kinds;
  for (const auto& part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    bool found = false;
    for (const auto& d : DescribeCachePolicies()) {
      if (CachePolicyName(d.kind) == part && d.kind != CachePolicyKind::kFull) {
        kinds.push_back(d.kind);
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("--policies: unknown compressed policy '", std::string(part), "'"));
    }
  }
  return kinds;
}

std::string ServedPolicies() {
  std::string names;
  for (const auto& d : DescribeCachePolicies()) {
    if (d.served && d.kind != CachePolicyKind::kFull) {
      absl::StrAppend(&names, names.empty() ? "" : ",", CachePolicyName(d.kind));
    }
  }
  return names;
}

}  // namespace

int RunEvalCommand(const std::vector<std::string>& args) {
  const char* shared = std::getenv("KVSERVE_SHARED");
  std::string model_dir = DefaultModelDir(), dtype = "float32", device = "cpu";
  std::string data = std::string(shared != nullptr && *shared ? shared : "../shared") +
                     "/data/tinystories/valid.txt";
  std::string policies = ServedPolicies(), budgets = "32,64,128,256", lengths = "512,2048,8192";
  std::string markdown_out, csv_out;
  int64_t prompt_tokens = 256, first_story = 0;
  ArgParser parser("kvserve-cli eval [--policies P,...] [--budgets B,...] [--lengths N,...]");
  parser.AddString("model", &model_dir, "Hugging Face model folder");
  parser.AddString("data", &data, "TinyStories-style text (stories end with <|endoftext|> lines)");
  parser.AddInt("first-story", &first_story, "index of the first story of the stream");
  parser.AddString("policies", &policies, "compressed policies to compare with FULL");
  parser.AddString("budgets", &budgets, "token budgets");
  parser.AddString("lengths", &lengths, "stream lengths to report, in tokens");
  parser.AddInt("prompt-tokens", &prompt_tokens,
                "where a policy that compresses the prompt once (SnapKV) sees the prompt end");
  parser.AddString("dtype", &dtype, "float32, bfloat16 or float16");
  parser.AddString("device", &device, "cpu, cuda or cuda:N");
  parser.AddString("markdown-out", &markdown_out, "also write the markdown table here");
  parser.AddString("csv-out", &csv_out, "also write the CSV here");
  auto status = parser.Parse(args);
  auto kinds = ParsePolicies(policies);
  auto budget_list = ParseInts(budgets, "budgets");
  auto length_list = ParseInts(lengths, "lengths");
  for (const absl::Status& s : {kinds.status(), budget_list.status(), length_list.status()}) {
    if (status.ok()) status = s;
  }
  if (const int code = parser.ExitCode(status, "kvserve-cli eval"); code >= 0) return code;
  auto fail = [](const absl::Status& s) { return Fail("kvserve-cli eval", s); };
  auto local = LoadLocalModel(model_dir, dtype, device);
  if (!local.ok()) return fail(local.status());
  auto& [tokenizer, model] = *local;

  QualityOptions options;
  options.lengths = *length_list;
  options.prompt_tokens = prompt_tokens;
  for (CachePolicyKind kind : *kinds) {
    for (int64_t budget : *budget_list) options.policies.push_back({kind, budget, {}});
  }
  const int64_t longest = *std::max_element(options.lengths.begin(), options.lengths.end());
  auto stream = StoryStream(*tokenizer, data, first_story, longest);
  if (!stream.ok()) return fail(stream.status());
  auto rows = EvaluateQuality(*model, *stream, options);
  if (!rows.ok()) return fail(rows.status());
  const std::string markdown = QualityMarkdown(*rows);
  std::cout << markdown;
  if (!markdown_out.empty()) std::ofstream(markdown_out) << markdown;
  if (!csv_out.empty()) std::ofstream(csv_out) << QualityCsv(*rows);
  return 0;
}

}  // namespace kvserve
