#include "tokenizer/pre_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tokenizer/byte_level.h"

namespace kvserve {

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const nlohmann::json& pre_tokenizer,
                                                    const std::string& file) {
  PreTokenizer result;
  if (absl::Status status = result.AddSteps(pre_tokenizer, file); !status.ok()) return status;
  return result;
}

absl::Status PreTokenizer::AddSteps(const nlohmann::json& pt, const std::string& file) {
  if (pt.is_null()) return absl::OkStatus();
  const std::string type = pt.at("type").get<std::string>();
  auto unsupported = [&] {
    return absl::UnimplementedError(
        absl::StrCat(file, ": pre_tokenizer ", pt.dump(), " is not supported"));
  };
  if (type == "Sequence") {
    for (const nlohmann::json& step : pt.at("pretokenizers")) {
      if (absl::Status status = AddSteps(step, file); !status.ok()) return status;
    }
    return absl::OkStatus();
  }
  Step step;
  if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    step.replacement = pt.value("replacement", "\xE2\x96\x81");
    // Older files say add_prefix_space instead of prepend_scheme.
    const std::string scheme =
        pt.value("prepend_scheme", pt.value("add_prefix_space", true) ? "always" : "never");
    if (scheme == "always") {
      step.prepend = Prepend::kAlways;
    } else if (scheme == "first") {
      step.prepend = Prepend::kFirst;
    } else if (scheme == "never") {
      step.prepend = Prepend::kNever;
    } else {
      return unsupported();
    }
    step.split = pt.value("split", true);
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
    step.add_prefix_space = pt.value("add_prefix_space", false);
    step.use_regex = pt.value("use_regex", true);
  } else if (type == "Split") {
    const auto pattern = pt.at("pattern").contains("Regex")
                             ? RecognizeSplitPattern(pt["pattern"]["Regex"].get<std::string>())
                             : std::nullopt;
    if (!pattern || pt.value("behavior", "") != "Isolated" || pt.value("invert", false)) {
      return unsupported();
    }
    step.kind = Kind::kSplit;
    step.pattern = *pattern;
  } else {
    return unsupported();
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

void PreTokenizer::ApplyMetaspace(const Step& step, std::vector<Word>* words) {
  std::vector<Word> out;
  for (Word& word : *words) {
    std::string text = absl::StrReplaceAll(word.text, {{" ", step.replacement}});
    // `tokenizers` does not add a second "▁" to text that already starts with one.
    const bool prepend =
        step.prepend == Prepend::kAlways || (step.prepend == Prepend::kFirst && word.starts_input);
    if (prepend && !text.starts_with(step.replacement)) text = step.replacement + text;
    if (!step.split) {
      out.push_back({std::move(text), word.starts_input});
      continue;
    }
    // MergedWithNext: each "▁" starts a new word.
    size_t start = 0;
    for (size_t pos = text.find(step.replacement, 1); pos != std::string::npos;
         pos = text.find(step.replacement, pos + 1)) {
      out.push_back({text.substr(start, pos - start), word.starts_input && start == 0});
      start = pos;
    }
    out.push_back({text.substr(start), word.starts_input && start == 0});
  }
  *words = std::move(out);
}

void PreTokenizer::ApplyByteLevel(const Step& step, std::vector<Word>* words) {
  std::vector<Word> out;
  for (Word& word : *words) {
    if (step.add_prefix_space && !word.text.starts_with(" ")) word.text = " " + word.text;
    if (!step.use_regex) {
      out.push_back({byte_level::Encode(word.text), word.starts_input});
      continue;
    }
    bool first = true;
    for (std::string_view piece : SplitByPattern(word.text, Gpt2SplitPattern())) {
      out.push_back({byte_level::Encode(piece), word.starts_input && first});
      first = false;
    }
  }
  *words = std::move(out);
}

void PreTokenizer::ApplySplit(const SplitPattern& pattern, std::vector<Word>* words) {
  std::vector<Word> out;
  for (const Word& word : *words) {
    bool first = true;
    for (std::string_view piece : SplitByPattern(word.text, pattern)) {
      out.push_back({std::string(piece), word.starts_input && first});
      first = false;
    }
  }
  *words = std::move(out);
}

std::vector<std::string> PreTokenizer::Split(std::string_view segment, bool starts_input) const {
  std::vector<Word> words;
  if (!segment.empty()) words.push_back({std::string(segment), starts_input});
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kMetaspace:
        ApplyMetaspace(step, &words);
        break;
      case Kind::kByteLevel:
        ApplyByteLevel(step, &words);
        break;
      case Kind::kSplit:
        ApplySplit(step.pattern, &words);
        break;
    }
  }
  std::vector<std::string> out;
  for (Word& word : words) {
    if (!word.text.empty()) out.push_back(std::move(word.text));
  }
  return out;
}

}  // namespace kvserve
