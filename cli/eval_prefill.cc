#include "cli/eval_prefill.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>

#include "cli/arg_parser.h"
#include "tools/prefill_quality.h"
#include "tools/story_stream.h"

namespace kvserve {
namespace {

// "segment_size=64,block_size=8" → PrefillSpec-style parameters.
absl::StatusOr<std::map<std::string, double>> ParseSetting(const std::string& text) {
  std::map<std::string, double> params;
  for (const auto& part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    double value = 0;
    if (kv.first.empty() || !absl::SimpleAtod(kv.second, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--critiprefill-params: '", std::string(part), "' is not name=number"));
    }
    params[kv.first] = value;
  }
  return params;
}

}  // namespace

int RunPrefillEval(LocalModel& local, const PrefillEvalFlags& flags) {
  auto fail = [](const absl::Status& s) { return Fail("kvserve-cli eval --prefill", s); };
  auto base = ParseSetting(flags.critiprefill_params);
  if (!base.ok()) return fail(base.status());
  PrefillQualityOptions options;
  options.policies = flags.policies;
  options.prompt_tokens = flags.prompt_tokens;
  options.continuation_tokens = flags.continuation_tokens;
  options.prefill_chunk = flags.prefill_chunk;
  const CritiPrefillLimits limits{local.model->config().num_layers, flags.prefill_chunk};
  for (int64_t kept : flags.kept_blocks) {
    auto params = *base;
    params["kept_blocks"] = static_cast<double>(kept);
    auto setting = ResolveCritiPrefillParams(params, limits);
    if (!setting.ok()) return fail(setting.status());
    options.settings.push_back(*setting);
  }
  const int64_t longest =
      *std::max_element(flags.prompt_tokens.begin(), flags.prompt_tokens.end()) +
      flags.continuation_tokens;
  std::vector<std::vector<int32_t>> windows;
  for (int64_t w = 0; w < flags.windows; ++w) {
    auto stream = StoryStream(*local.tokenizer, flags.data,
                              flags.first_story + w * flags.window_stride, longest);
    if (!stream.ok()) return fail(stream.status());
    windows.push_back(std::move(*stream));
  }
  auto rows = EvaluatePrefillQuality(*local.model, windows, options);
  if (!rows.ok()) return fail(rows.status());
  const std::string markdown = PrefillQualityMarkdown(*rows);
  std::cout << markdown;
  if (!flags.markdown_out.empty()) std::ofstream(flags.markdown_out) << markdown;
  if (!flags.csv_out.empty()) std::ofstream(flags.csv_out) << PrefillQualityCsv(*rows);
  return 0;
}

}  // namespace kvserve
