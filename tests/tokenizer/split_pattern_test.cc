// The hand-written GPT-2 and Llama-3 pre-tokenizer scanners against splits worked out from the
// regexes (leftmost alternative wins at each position, greedy runs with backtracking).
#include "tokenizer/split_pattern.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvserve {
namespace {

using Pieces = std::vector<std::string>;

Pieces Split(std::string_view text, const SplitPattern& pattern) {
  Pieces pieces;
  for (std::string_view piece : SplitByPattern(text, pattern)) pieces.emplace_back(piece);
  return pieces;
}

SplitPattern Llama3() {
  return *RecognizeSplitPattern(
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
}

TEST(SplitPatternTokenizerTest, RecognizesOnlyKnownPatterns) {
  EXPECT_TRUE(RecognizeSplitPattern(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"));
  EXPECT_EQ(Llama3().max_digits, 3);
  EXPECT_FALSE(RecognizeSplitPattern(R"(\w+|\s+)"));
}

TEST(SplitPatternTokenizerTest, Gpt2) {
  // "  test": \s+(?!\S) gives back the last space so that " test" is one word.
  // "\n\n  x": the whitespace run minus its last space, then " x".
  EXPECT_EQ(Split("Hello world's  test\n\n  x 123abc", Gpt2SplitPattern()),
            (Pieces{"Hello", " world", "'s", " ", " test", "\n\n ", " x", " 123", "abc"}));
  // Contractions are case-sensitive in GPT-2: "'S" is punctuation then a word.
  EXPECT_EQ(Split("IT'S", Gpt2SplitPattern()), (Pieces{"IT", "'", "S"}));
  EXPECT_EQ(Split("12345 trailing  ", Gpt2SplitPattern()), (Pieces{"12345", " trailing", "  "}));
  // Non-ASCII letters are letters (é, CJK); emoji are "other".
  EXPECT_EQ(Split("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80!", Gpt2SplitPattern()),
            (Pieces{"caf\xC3\xA9", " \xE6\x97\xA5\xE6\x9C\xAC", " \xF0\x9F\x98\x80!"}));
}

TEST(SplitPatternTokenizerTest, Llama3) {
  // "\n\n  x": \s*[\r\n]+ stops after the last newline; the two spaces split as " " + " x".
  // " 123": a space cannot prefix numbers, so " " then "123".
  EXPECT_EQ(Split("Hello world's  test\n\n  x 123abc", Llama3()),
            (Pieces{"Hello", " world", "'s", " ", " test", "\n\n", " ", " x", " ", "123", "abc"}));
  EXPECT_EQ(Split("IT'S", Llama3()), (Pieces{"IT", "'S"}));  // (?i:...)
  EXPECT_EQ(Split("12345", Llama3()), (Pieces{"123", "45"}));
  // Punctuation takes the newlines after it. Any one non-letter, a tab or "(" too, may prefix a
  // word; "\t(" cannot both prefix "x", so the tab stands alone.
  EXPECT_EQ(Split("hi!!\n\nthere\t(x) a\tb", Llama3()),
            (Pieces{"hi", "!!\n\n", "there", "\t", "(x", ")", " a", "\tb"}));
}

}  // namespace
}  // namespace kvserve
