// The "pre_tokenizer" of a tokenizer.json (internal to tokenizer/): cuts a normalized segment into
// the words that BPE sees. Supported: Sequence, Metaspace, ByteLevel and Split with the GPT-2 or
// Llama-3/Qwen2 regex (behavior Isolated); anything else is rejected at load time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/split_pattern.h"

namespace kvserve {

class PreTokenizer {
 public:
  // `pre_tokenizer` may be null (the whole segment is one word). `file` names the source in errors.
  static absl::StatusOr<PreTokenizer> FromJson(const nlohmann::json& pre_tokenizer,
                                               const std::string& file);

  // `starts_input`: the segment begins the whole input (no added token before it), which is when
  // Metaspace's prepend_scheme "first" adds its "▁".
  std::vector<std::string> Split(std::string_view segment, bool starts_input) const;

 private:
  enum class Kind { kMetaspace, kByteLevel, kSplit };
  enum class Prepend { kAlways, kFirst, kNever };
  struct Step {
    Kind kind;
    std::string replacement;  // Metaspace
    Prepend prepend = Prepend::kAlways;
    bool split = true;              // Metaspace: cut before each replacement character
    bool add_prefix_space = false;  // ByteLevel
    bool use_regex = true;          // ByteLevel: also apply the GPT-2 split
    SplitPattern pattern{};         // Split
  };
  struct Word {
    std::string text;
    bool starts_input;
  };
  absl::Status AddSteps(const nlohmann::json& pre_tokenizer, const std::string& file);
  static void ApplyMetaspace(const Step& step, std::vector<Word>* words);
  static void ApplyByteLevel(const Step& step, std::vector<Word>* words);
  static void ApplySplit(const SplitPattern& pattern, std::vector<Word>* words);

  std::vector<Step> steps_;
};

}  // namespace kvserve
