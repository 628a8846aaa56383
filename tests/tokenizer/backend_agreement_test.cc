// The tokenizer.json and tokenizer.model backends on stories260K must agree on awkward text, and
// decode(encode(x)) must be what transformers gives.
#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/test_support.h"
#include "tests/tokenizer/temp_model_dir.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

class TokenizerBackendAgreementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    json_ = testing::LoadOrFail(testing::Stories260kDir(), "json");
    sentencepiece_ = testing::LoadOrFail(testing::Stories260kDir(), "sentencepiece");
    ASSERT_NE(json_, nullptr);
    ASSERT_NE(sentencepiece_, nullptr);
  }
  std::unique_ptr<Tokenizer> json_;
  std::unique_ptr<Tokenizer> sentencepiece_;
};

// Text whose decode(encode(text)) is text itself: with the legacy Prepend("▁") normalizer the
// added "▁" is exactly what the Strip decoder removes, so every space, tab and newline survives.
const char* const kRoundTripTexts[] = {
    "",
    "Once upon a time",
    "   ",
    "a   b    c",
    "  leading and trailing  ",
    " one leading",
    "line one\nline two\n\n",
    "tab\tseparated\tvalues\t",
    "\r\n windows \r\n",
    "caf\xC3\xA9 stra\xC3\x9F"
    "e",  // café straße (é in vocab, ß not)
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",  // 日本語 한국어
    "\xF0\x9F\x98\x80 emoji \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",  // 😀 emoji 👍🏽
    "quotes \"'`, dashes \xE2\x80\x94 and 100% $5",
};

TEST_F(TokenizerBackendAgreementTest, SameIdsAndTextOnEdgeCases) {
  for (const char* text : kRoundTripTexts) {
    SCOPED_TRACE(::testing::Message() << "text: \"" << text << "\"");
    for (bool add_bos : {true, false}) {
      const std::vector<int32_t> ids = json_->Encode(text, add_bos);
      EXPECT_EQ(ids, sentencepiece_->Encode(text, add_bos));
      EXPECT_EQ(json_->Decode(ids), text);
      EXPECT_EQ(sentencepiece_->Decode(ids), text);
    }
  }
}

TEST_F(TokenizerBackendAgreementTest, HandWorkedEncodings) {
  // Empty text is just BOS: the Prepend normalizer leaves empty text empty.
  EXPECT_EQ(json_->Encode("", true), std::vector<int32_t>{1});
  // "😀" is not in the vocabulary: "▁" (410) then its bytes F0 9F 98 80 as <0xF0>.. (id = 3 + byte).
  const std::vector<int32_t> emoji = {1, 410, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80};
  EXPECT_EQ(json_->Encode("\xF0\x9F\x98\x80", true), emoji);
  EXPECT_EQ(sentencepiece_->Encode("\xF0\x9F\x98\x80", true), emoji);
  // "a\n": "▁a" (261) then byte <0x0A> (13).
  EXPECT_EQ(json_->Encode("a\n", false), (std::vector<int32_t>{261, 13}));
  // Two spaces: "▁▁▁a": no "▁▁" merge exists, so "▁", "▁", "▁a".
  EXPECT_EQ(json_->Encode("  a", false), (std::vector<int32_t>{410, 410, 261}));
}

// "<s>" typed in the text becomes the BOS id (as in transformers, slow and fast), and each side of
// it is normalized on its own, so the right side gets its own "▁" ("legacy" Llama behaviour).
// Decode drops the special token; the text around it keeps both its spaces plus that extra "▁":
// "a <s> b" comes back as "a   b" (three spaces), exactly as transformers does.
TEST_F(TokenizerBackendAgreementTest, SpecialTokenTextInInput) {
  const std::string text = "a <s> b</s>";
  const std::vector<int32_t> ids = json_->Encode(text, false);
  // "▁a" "▁" | <s> | "▁" "▁b" | </s>
  EXPECT_EQ(ids, (std::vector<int32_t>{261, 410, 1, 410, 268, 2}));
  EXPECT_EQ(sentencepiece_->Encode(text, false), ids);
  EXPECT_EQ(json_->Decode(ids), "a   b");
  EXPECT_EQ(sentencepiece_->Decode(ids), "a   b");
}

TEST_F(TokenizerBackendAgreementTest, DecodeSkipsSpecialAndOutOfRangeIds) {
  const std::vector<int32_t> ids = {1, 0, 403, 2, 407, 9999, -5};
  EXPECT_EQ(json_->Decode(ids), "Once upon");
  EXPECT_EQ(sentencepiece_->Decode(ids), "Once upon");
}

// Lone or broken byte-fallback runs: transformers turns an invalid run into one U+FFFD per byte.
TEST_F(TokenizerBackendAgreementTest, InvalidBytesDecodeAsReplacementCharacters) {
  const std::vector<int32_t> ids = {403, 3 + 0xF0, 3 + 0x9F, 407};  // "▁Once" F0 9F "▁upon"
  EXPECT_EQ(json_->Decode(ids), "Once\xEF\xBF\xBD\xEF\xBF\xBD upon");
  EXPECT_EQ(sentencepiece_->Decode(ids), "Once\xEF\xBF\xBD\xEF\xBF\xBD upon");
}

// Newer Llama-family files drop the Prepend normalizer for a Metaspace pre-tokenizer with
// prepend_scheme "first" (transformers' legacy=false). Same ids on plain text; the differences
// are the documented ones: no "▁" after a special token, and no extra "▁" before leading spaces.
TEST_F(TokenizerBackendAgreementTest, MetaspacePreTokenizerVariant) {
  nlohmann::json file;
  std::ifstream(testing::Stories260kDir() + "/tokenizer.json") >> file;
  file["normalizer"] = nullptr;
  file["pre_tokenizer"] = {{"type", "Metaspace"},
                           {"replacement", "\xE2\x96\x81"},
                           {"prepend_scheme", "first"},
                           {"split", false}};
  testing::TempModelDir dir;
  dir.Write("tokenizer.json", file.dump());
  std::filesystem::copy_file(testing::Stories260kDir() + "/tokenizer_config.json",
                             dir.path() + "/tokenizer_config.json");
  auto metaspace = testing::LoadOrFail(dir.path());
  ASSERT_NE(metaspace, nullptr);

  for (const char* text : {"Once upon a time", "a   b", "tab\tand\nnewline", ""}) {
    EXPECT_EQ(metaspace->Encode(text, true), json_->Encode(text, true)) << text;
  }
  // " a": already starts with "▁" after the space replacement, so nothing is prepended.
  EXPECT_EQ(metaspace->Encode(" a", false), (std::vector<int32_t>{261}));
  EXPECT_EQ(json_->Encode(" a", false), (std::vector<int32_t>{410, 261}));
  // After "<s>" the segment does not start the input: "b" gets no "▁" (430 is "b").
  EXPECT_EQ(metaspace->Encode("<s>b", false), (std::vector<int32_t>{1, 430}));
  EXPECT_EQ(json_->Encode("<s>b", false), (std::vector<int32_t>{1, 268}));
}

}  // namespace
}  // namespace kvserve
