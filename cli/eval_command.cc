// kvserve-cli eval: the quality of cache policies against the full cache on held-out text, streamed
// token by token (teacher forcing), as a markdown table and a CSV; with --prefill critiprefill,
// CritiPrefill against dense prefill instead (cli/eval_prefill.h).
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <fstream>
#include <iostream>

#include "cache/policy_factory.h"
#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "cli/eval_prefill.h"
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
  std::string prefill = "dense", kept_blocks = "4,8,16";
  PrefillEvalFlags prefill_flags;
  prefill_flags.critiprefill_params = "segment_size=64,block_size=8,dense_prefix_tokens=128";
  ArgParser parser(
      "kvserve-cli eval [--policies P,...] [--budgets B,...] [--lengths N,...] "
      "[--prefill critiprefill ...]");
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
  parser.AddString("prefill", &prefill,
                   "dense: cache policies against FULL; critiprefill: CritiPrefill against dense "
                   "prefill, FULL and each policy x budget, --lengths being the prompt lengths");
  parser.AddString("critiprefill-params", &prefill_flags.critiprefill_params,
                   "with --prefill critiprefill: name=value,... (the API's CritiPrefillParams)");
  parser.AddString("kept-blocks", &kept_blocks,
                   "with --prefill critiprefill: one setting per kept_blocks value");
  parser.AddInt("continuation", &prefill_flags.continuation_tokens,
                "with --prefill critiprefill: tokens scored after each prompt");
  parser.AddInt("windows", &prefill_flags.windows,
                "with --prefill critiprefill: windows of text, pooled");
  parser.AddInt("window-stride", &prefill_flags.window_stride,
                "with --prefill critiprefill: stories between the windows' first stories");
  parser.AddInt("prefill-chunk", &prefill_flags.prefill_chunk,
                "with --prefill critiprefill: most prompt tokens per forward");
  auto status = parser.Parse(args);
  auto kinds = ParsePolicies(policies);
  auto budget_list = ParseInts(budgets, "budgets");
  auto length_list = ParseInts(lengths, "lengths");
  auto kept_list = ParseInts(kept_blocks, "kept-blocks");
  for (const absl::Status& s :
       {kinds.status(), budget_list.status(), length_list.status(), kept_list.status()}) {
    if (status.ok()) status = s;
  }
  if (status.ok() && prefill != "dense" && prefill != "critiprefill") {
    status = absl::InvalidArgumentError("--prefill must be dense or critiprefill, got " + prefill);
  }
  if (const int code = parser.ExitCode(status, "kvserve-cli eval"); code >= 0) return code;
  auto fail = [](const absl::Status& s) { return Fail("kvserve-cli eval", s); };
  auto local = LoadLocalModel(model_dir, dtype, device);
  if (!local.ok()) return fail(local.status());
  auto& [tokenizer, model] = *local;

  if (prefill == "critiprefill") {
    prefill_flags.data = data;
    prefill_flags.first_story = first_story;
    prefill_flags.policies.push_back({CachePolicyKind::kFull, 0, {}});
    for (CachePolicyKind kind : *kinds) {
      for (int64_t budget : *budget_list) prefill_flags.policies.push_back({kind, budget, {}});
    }
    prefill_flags.prompt_tokens = *length_list;
    prefill_flags.kept_blocks = *kept_list;
    prefill_flags.markdown_out = markdown_out;
    prefill_flags.csv_out = csv_out;
    return RunPrefillEval(*local, prefill_flags);
  }
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
