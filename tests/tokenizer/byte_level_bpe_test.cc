// A tiny GPT-2-style byte-level tokenizer.json written by the test, with encodings worked out by
// hand from its merges.
#include "nlohmann/json.hpp"
#include "tests/tokenizer/temp_model_dir.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

// Byte-level spelling: ' ' is "Ġ" (U+0120); "é" is bytes C3 A9, spelled "Ã©" (both printable
// Latin-1, so they stand for themselves).
const char* const kVocab[] = {
    "!",
    "d",
    "e",
    "h",
    "l",
    "o",
    "r",
    "w",
    "\xC4\xA0" /* Ġ */,
    "\xC3\x83" /* Ã */,
    "\xC2\xA9" /* © */,
    "1",
    "2",
    "3",
    "4",
    "5",
    // merged tokens, ids 16..
    "ll",
    "he",
    "hell",
    "llo",
    "\xC4\xA0w",
    "or",
    "\xC4\xA0wor",
    "\xC3\x83\xC2\xA9" /* é */,
    "34",
};

// Ranks in order. "he ll" (2) outranks "ll o" (3), so "hello" is "hell" + "o", not "he" + "llo".
// Mixed "a b" strings and [a, b] pairs, as different tokenizers versions write them.
nlohmann::json Merges() {
  return nlohmann::json::array({
      "l l",                                            // 0 -> ll (16)
      nlohmann::json::array({"h", "e"}),                // 1 -> he (17)
      "he ll",                                          // 2 -> hell (18)
      "ll o",                                           // 3 -> llo (19)
      "\xC4\xA0 w",                                     // 4 -> Ġw (20)
      nlohmann::json::array({"o", "r"}),                // 5 -> or (21)
      "\xC4\xA0w or",                                   // 6 -> Ġwor (22)
      nlohmann::json::array({"\xC3\x83", "\xC2\xA9"}),  // 7 -> Ã© (23)
      "3 4",                                            // 8 -> 34 (24)
  });
}

nlohmann::json TokenizerJson(const nlohmann::json& pre_tokenizer) {
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < std::size(kVocab); ++i) vocab[kVocab[i]] = i;
  vocab["<|end|>"] = 25;
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 25}, {"content", "<|end|>"}, {"special", true}},
        {{"id", 26}, {"content", "[tool]"}, {"special", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Merges()}, {"unk_token", nullptr}}},
  };
}

const nlohmann::json kGpt2PreTokenizer = {
    {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};

// Llama-3's: a Split on its regex, then ByteLevel without the GPT-2 regex.
const nlohmann::json kLlama3PreTokenizer = {
    {"type", "Sequence"},
    {"pretokenizers",
     {{{"type", "Split"},
       {"pattern",
        {{"Regex",
          R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
       {"behavior", "Isolated"},
       {"invert", false}},
      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};

class ByteLevelTokenizerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Tokenizer> Load(const nlohmann::json& pre_tokenizer) {
    dir_.Write("tokenizer.json", TokenizerJson(pre_tokenizer).dump());
    dir_.Write("generation_config.json", R"({"eos_token_id": [25, 26]})");
    dir_.Write("config.json", R"({"eos_token_id": 25, "bos_token_id": null})");
    return testing::LoadOrFail(dir_.path());
  }
  testing::TempModelDir dir_;
};

TEST_F(ByteLevelTokenizerTest, MergesByRankThenLeftmost) {
  auto tokenizer = Load(kGpt2PreTokenizer);
  ASSERT_NE(tokenizer, nullptr);
  // h e l l o: "l l"(0) -> h e ll o; "h e"(1) -> he ll o; "he ll"(2) -> hell o. "ll o"(3) never
  // gets its turn.
  EXPECT_EQ(tokenizer->Encode("hello", true), (std::vector<int32_t>{18, 5}));
  // l l l: both pairs have rank 0; the leftmost merges first -> ll l.
  EXPECT_EQ(tokenizer->Encode("lll", false), (std::vector<int32_t>{16, 4}));
  // " world!" splits (GPT-2 regex) into " world" and "!". Ġ w o r l d: "Ġ w"(4) -> Ġw o r l d;
  // "o r"(5) -> Ġw or l d; "Ġw or"(6) -> Ġwor l d.
  EXPECT_EQ(tokenizer->Encode("hello world!", false), (std::vector<int32_t>{18, 5, 22, 4, 1, 0}));
  // é is C3 A9 -> "Ã" "©" -> merge 7.
  EXPECT_EQ(tokenizer->Encode("\xC3\xA9", false), std::vector<int32_t>{23});
}

TEST_F(ByteLevelTokenizerTest, SpecialTokensComeFromConfigs) {
  auto tokenizer = Load(kGpt2PreTokenizer);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->bos_id(), -1);  // no BOS anywhere: Encode never adds one
  EXPECT_FALSE(tokenizer->add_bos_token());
  EXPECT_EQ(tokenizer->eos_ids(), (std::vector<int32_t>{25, 26}));  // generation_config wins
  EXPECT_EQ(tokenizer->vocab_size(), 27);
}

TEST_F(ByteLevelTokenizerTest, DigitGroupsFollowThePattern) {
  // GPT-2's \p{N}+ keeps "12345" whole, so "3 4" merges. Llama-3's \p{N}{1,3} cuts "123" | "45".
  auto gpt2 = Load(kGpt2PreTokenizer);
  ASSERT_NE(gpt2, nullptr);
  EXPECT_EQ(gpt2->Encode("12345", false), (std::vector<int32_t>{11, 12, 24, 15}));
  auto llama3 = Load(kLlama3PreTokenizer);
  ASSERT_NE(llama3, nullptr);
  EXPECT_EQ(llama3->Encode("12345", false), (std::vector<int32_t>{11, 12, 13, 14, 15}));
  // Words and spaces as in GPT-2 for this text.
  EXPECT_EQ(llama3->Encode("hello world!", false), (std::vector<int32_t>{18, 5, 22, 4, 1, 0}));
}

TEST_F(ByteLevelTokenizerTest, AddedTokensAreSplitOutAndSpecialOnesSkipped) {
  auto tokenizer = Load(kGpt2PreTokenizer);
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<int32_t> ids = tokenizer->Encode("hello<|end|>[tool]lll", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{18, 5, 25, 26, 16, 4}));
  EXPECT_EQ(tokenizer->Decode(ids), "hello[tool]lll");
}

TEST_F(ByteLevelTokenizerTest, DecodesNonAsciiBytes) {
  auto tokenizer = Load(kGpt2PreTokenizer);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{18, 5, 22, 4, 1, 0}), "hello world!");
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{23}), "\xC3\xA9");
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{9, 10}), "\xC3\xA9");  // Ã © as two tokens
  // A lone lead byte is invalid UTF-8: one U+FFFD (from_utf8_lossy).
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{9, 8}), "\xEF\xBF\xBD ");
  // Round trip of text whose characters all exist as bytes in this vocabulary.
  for (const char* text : {"hello world!", "  hello   world\xC3\xA9 ", "12345 \xC3\xA9!"}) {
    EXPECT_EQ(tokenizer->Decode(tokenizer->Encode(text, false)), text);
  }
}

TEST_F(ByteLevelTokenizerTest, StreamsBytesOfOneCharacterTogether) {
  auto tokenizer = Load(kGpt2PreTokenizer);
  ASSERT_NE(tokenizer, nullptr);
  IncrementalDetokenizer detokenizer(*tokenizer);
  // "hell" Ã © "o": the lead byte alone is held back, then "é" comes whole.
  EXPECT_EQ(detokenizer.Push(18), "hell");
  EXPECT_EQ(detokenizer.Push(9), "");
  EXPECT_EQ(detokenizer.Push(10), "\xC3\xA9");
  EXPECT_EQ(detokenizer.Push(25), "");  // special: skipped
  EXPECT_EQ(detokenizer.Push(5), "o");
  EXPECT_EQ(detokenizer.Flush(), "");
}

}  // namespace
}  // namespace kvserve
