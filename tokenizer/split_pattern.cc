#include "tokenizer/split_pattern.h"

#include <cstddef>
#include <cstdint>

#include "tokenizer/unicode.h"

namespace kvserve {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The text as code points, so that the scanner can look ahead by characters.
class CharText {
 public:
  explicit CharText(std::string_view text) {
    for (size_t pos = 0; pos < text.size();) {
      const unicode::DecodedChar c = unicode::DecodeChar(text, pos);
      chars_.push_back(c.code_point);
      offsets_.push_back(pos);
      pos += c.length;
    }
    offsets_.push_back(text.size());
  }
  size_t size() const { return chars_.size(); }
  size_t offset(size_t i) const { return offsets_[i]; }
  // 0 past the end, which no class below accepts.
  char32_t at(size_t i) const { return i < chars_.size() ? chars_[i] : 0; }
  bool letter(size_t i) const { return i < size() && unicode::IsLetter(chars_[i]); }
  bool number(size_t i) const { return i < size() && unicode::IsNumber(chars_[i]); }
  bool space(size_t i) const { return i < size() && unicode::IsWhitespace(chars_[i]); }
  bool other(size_t i) const { return i < size() && !letter(i) && !space(i) && !number(i); }

 private:
  std::vector<char32_t> chars_;
  std::vector<size_t> offsets_;
};

char32_t Lower(char32_t c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

// 's|'t|'re|'ve|'m|'ll|'d at i; returns the match length in characters or 0.
size_t MatchContraction(const CharText& t, size_t i, bool ignore_case) {
  if (t.at(i) != '\'') return 0;
  auto is = [&](size_t k, char32_t want) {
    return (ignore_case ? Lower(t.at(k)) : t.at(k)) == want;
  };
  if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return 2;
  if ((is(i + 1, 'r') || is(i + 1, 'v')) && is(i + 2, 'e')) return 3;
  if (is(i + 1, 'l') && is(i + 2, 'l')) return 3;
  return 0;
}

template <typename Pred>
size_t RunEnd(const CharText& t, size_t i, Pred pred, size_t max = SIZE_MAX) {
  size_t j = i;
  while (j < t.size() && j - i < max && pred(j)) ++j;
  return j;
}

// \s+(?!\S) then \s+: the whitespace run, minus its last character when a non-space follows, so
// that the space can start the next word (" ?\p{L}+").
size_t MatchTrailingSpaces(const CharText& t, size_t i) {
  const size_t end = RunEnd(t, i, [&](size_t k) { return t.space(k); });
  if (end == i) return 0;
  if (end == t.size() || end - i == 1) return end - i;
  return end - 1 - i;
}

size_t MatchGpt2(const CharText& t, size_t i) {
  if (size_t n = MatchContraction(t, i, /*ignore_case=*/false)) return n;
  const size_t s = t.at(i) == ' ' ? i + 1 : i;  // the optional leading space
  auto letter = [&](size_t k) { return t.letter(k); };
  auto number = [&](size_t k) { return t.number(k); };
  auto other = [&](size_t k) { return t.other(k); };
  if (t.letter(s)) return RunEnd(t, s, letter) - i;
  if (t.number(s)) return RunEnd(t, s, number) - i;
  if (t.other(s)) return RunEnd(t, s, other) - i;
  return MatchTrailingSpaces(t, i);
}

size_t MatchLlama3(const CharText& t, size_t i, int max_digits) {
  if (size_t n = MatchContraction(t, i, /*ignore_case=*/true)) return n;
  auto letter = [&](size_t k) { return t.letter(k); };
  // [^\r\n\p{L}\p{N}]?\p{L}+
  const char32_t c = t.at(i);
  const bool may_prefix = i < t.size() && c != '\r' && c != '\n' && !t.letter(i) && !t.number(i);
  if (may_prefix && t.letter(i + 1)) return RunEnd(t, i + 1, letter) - i;
  if (t.letter(i)) return RunEnd(t, i, letter) - i;
  // \p{N}{1,max}
  if (t.number(i))
    return RunEnd(
               t, i, [&](size_t k) { return t.number(k); }, max_digits) -
           i;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t s = c == ' ' ? i + 1 : i;
  if (t.other(s)) {
    const size_t end = RunEnd(t, s, [&](size_t k) { return t.other(k); });
    return RunEnd(t, end, [&](size_t k) { return t.at(k) == '\r' || t.at(k) == '\n'; }) - i;
  }
  // \s*[\r\n]+: the whitespace run up to and including its last line break.
  const size_t end = RunEnd(t, i, [&](size_t k) { return t.space(k); });
  for (size_t k = end; k > i; --k) {
    if (t.at(k - 1) == '\r' || t.at(k - 1) == '\n') return k - i;
  }
  return MatchTrailingSpaces(t, i);
}

}  // namespace

std::optional<SplitPattern> RecognizeSplitPattern(std::string_view regex) {
  if (regex == kGpt2Regex) return Gpt2SplitPattern();
  if (regex == kLlama3Regex) return SplitPattern{SplitPattern::Family::kLlama3, 3};
  if (regex == kQwen2Regex) return SplitPattern{SplitPattern::Family::kLlama3, 1};
  return std::nullopt;
}

SplitPattern Gpt2SplitPattern() { return SplitPattern{SplitPattern::Family::kGpt2, 0}; }

std::vector<std::string_view> SplitByPattern(std::string_view text, const SplitPattern& pattern) {
  const CharText t(text);
  std::vector<std::string_view> pieces;
  size_t gap_start = 0;
  for (size_t i = 0; i < t.size();) {
    const size_t n = pattern.family == SplitPattern::Family::kGpt2
                         ? MatchGpt2(t, i)
                         : MatchLlama3(t, i, pattern.max_digits);
    if (n == 0) {  // unreachable for these patterns; keep the character in a gap piece
      ++i;
      continue;
    }
    if (gap_start < i)
      pieces.push_back(text.substr(t.offset(gap_start), t.offset(i) - t.offset(gap_start)));
    pieces.push_back(text.substr(t.offset(i), t.offset(i + n) - t.offset(i)));
    i += n;
    gap_start = i;
  }
  if (gap_start < t.size()) pieces.push_back(text.substr(t.offset(gap_start)));
  return pieces;
}

}  // namespace kvserve
