// Streaming detokenization must add up to Decode(all ids) and never emit half a character.
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/test_support.h"
#include "tests/tokenizer/temp_model_dir.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace kvserve {
namespace {

// Pushes ids one at a time, checking each piece is valid UTF-8, and returns the pieces (the last
// one from Flush).
std::vector<std::string> Stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  IncrementalDetokenizer detokenizer(tokenizer);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(detokenizer.Push(id));
  pieces.push_back(detokenizer.Flush());
  for (const std::string& piece : pieces) {
    EXPECT_TRUE(unicode::IsValidUtf8(piece)) << "invalid UTF-8 piece: " << piece;
  }
  return pieces;
}

std::string Join(const std::vector<std::string>& pieces) {
  std::string text;
  for (const std::string& piece : pieces) text += piece;
  return text;
}

class IncrementalDetokenizerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    tokenizer_ = testing::LoadOrFail(testing::Stories260kDir(), GetParam());
    ASSERT_NE(tokenizer_, nullptr);
  }
  std::unique_ptr<Tokenizer> tokenizer_;
};

INSTANTIATE_TEST_SUITE_P(Backends, IncrementalDetokenizerTest,
                         ::testing::Values("json", "sentencepiece"));

TEST_P(IncrementalDetokenizerTest, GoldenStreamsAddUpToDecode) {
  std::ifstream in(testing::Stories260kDir() + "/golden.json");
  for (const nlohmann::json& c : nlohmann::json::parse(in)["cases"]) {
    std::vector<int32_t> ids = c["prompt_ids"].get<std::vector<int32_t>>();
    for (int32_t id : c["greedy_ids"]) ids.push_back(id);
    EXPECT_EQ(Join(Stream(*tokenizer_, ids)), tokenizer_->Decode(ids)) << c["prompt"];
  }
}

TEST_P(IncrementalDetokenizerTest, EmojiSplitOverByteTokensIsHeldBackUntilComplete) {
  // BOS "▁Hi" ... "▁" <F0> <9F> <98> <80> "▁you"
  const std::vector<int32_t> ids = tokenizer_->Encode("Hi \xF0\x9F\x98\x80 you\n", true);
  const std::vector<std::string> pieces = Stream(*tokenizer_, ids);
  EXPECT_EQ(Join(pieces), "Hi \xF0\x9F\x98\x80 you\n");
  // The emoji appears whole, in the piece of its last byte token.
  const size_t last_byte = std::find(ids.begin(), ids.end(), 3 + 0x80) - ids.begin();
  ASSERT_LT(last_byte, ids.size());
  EXPECT_EQ(pieces[last_byte - 1], "");
  EXPECT_EQ(pieces[last_byte - 2], "");
  EXPECT_NE(pieces[last_byte].find("\xF0\x9F\x98\x80"), std::string::npos);
}

TEST_P(IncrementalDetokenizerTest, LeadingSpaceOfTheFirstWordIsDropped) {
  const std::vector<int32_t> ids = {1, 403, 407};  // <s> ▁Once ▁upon
  EXPECT_EQ(Stream(*tokenizer_, ids), (std::vector<std::string>{"", "Once", " upon", ""}));
}

TEST_P(IncrementalDetokenizerTest, MixedTextRoundTrips) {
  const std::string text =
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD  done.\n\tOK</s> "
      "after";
  const std::vector<int32_t> ids = tokenizer_->Encode(text, true);
  EXPECT_EQ(Join(Stream(*tokenizer_, ids)), tokenizer_->Decode(ids));
}

TEST_P(IncrementalDetokenizerTest, FlushEmitsTrailingInvalidBytesAsReplacementCharacters) {
  const std::vector<int32_t> ids = {403, 3 + 0xF0, 3 + 0x9F};  // "▁Once" then half an emoji
  const std::vector<std::string> pieces = Stream(*tokenizer_, ids);
  EXPECT_EQ(pieces, (std::vector<std::string>{"Once", "", "", "\xEF\xBF\xBD\xEF\xBF\xBD"}));
  EXPECT_EQ(Join(pieces), tokenizer_->Decode(ids));
}

TEST_P(IncrementalDetokenizerTest, LongStreamKeepsASmallWindow) {
  // 100k ids; quadratic re-decoding would take minutes, the window makes it linear.
  std::vector<int32_t> ids;
  for (int i = 0; i < 20000; ++i) ids.insert(ids.end(), {403, 407, 261, 378, 432});
  std::string expected = tokenizer_->Decode(ids);
  EXPECT_EQ(Join(Stream(*tokenizer_, ids)), expected);
}

}  // namespace
}  // namespace kvserve
