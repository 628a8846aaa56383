// Hand-written matchers for the pre-tokenizer regexes of GPT-2 and Llama-3/Qwen2 (internal to
// tokenizer/). std::regex has no \p{L}, so instead of a regex engine we recognise these exact
// pattern strings and run an equivalent scanner; any other pattern is rejected at load time.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace kvserve {

struct SplitPattern {
  enum class Family {
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kGpt2,
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
    // \s*[\r\n]+|\s+(?!\S)|\s+   (Qwen2 has \p{N} where Llama-3 has \p{N}{1,3})
    kLlama3,
  };
  Family family;
  int max_digits;  // longest run of numbers in one piece (Llama-3: 3, Qwen2: 1, GPT-2: unbounded)
};

// The pattern for a Split pre-tokenizer regex string, or nullopt when it is not one we know.
std::optional<SplitPattern> RecognizeSplitPattern(std::string_view regex);

// The pattern ByteLevel's use_regex=true applies.
SplitPattern Gpt2SplitPattern();

// Splits text the way `find_iter` over the regex would, keeping every match as its own piece
// (SplitDelimiterBehavior::Isolated). Gaps between matches, which these patterns never leave for
// valid UTF-8, are kept as pieces too so that no byte is lost.
std::vector<std::string_view> SplitByPattern(std::string_view text, const SplitPattern& pattern);

}  // namespace kvserve
