// Tokenizer::Load: which file it picks, and clear errors that name the file at fault.
#include <filesystem>

#include "tests/test_support.h"
#include "tests/tokenizer/temp_model_dir.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

// Whether the error message contains `text`; streams the status on failure.
::testing::AssertionResult Mentions(const absl::Status& status, const std::string& text) {
  if (std::string(status.message()).find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << status << " does not mention \"" << text << "\"";
}

// The smallest valid byte-level tokenizer.json: two tokens, no merges.
constexpr char kTinyJson[] = R"({
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
  "pre_tokenizer": {"type": "ByteLevel"},
  "decoder": {"type": "ByteLevel"}
})";

TEST(TokenizerLoadTest, MissingDirectory) {
  const auto tokenizer = Tokenizer::Load("/nonexistent/kvserve/model");
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Mentions(tokenizer.status(), "/nonexistent/kvserve/model"));
}

TEST(TokenizerLoadTest, DirectoryWithoutTokenizerFiles) {
  testing::TempModelDir dir;
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Mentions(tokenizer.status(), "tokenizer.json"));
  EXPECT_TRUE(Mentions(tokenizer.status(), "tokenizer.model"));
  EXPECT_EQ(Tokenizer::Load(dir.path(), "sentencepiece").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(TokenizerLoadTest, MalformedJson) {
  testing::TempModelDir dir;
  dir.Write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": )");
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(tokenizer.status(), dir.path() + "/tokenizer.json"));
  EXPECT_TRUE(Mentions(tokenizer.status(), "malformed JSON"));
}

TEST(TokenizerLoadTest, WrongStructure) {
  testing::TempModelDir dir;
  dir.Write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": "zero"}}})");
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(tokenizer.status(), "tokenizer.json"));
}

TEST(TokenizerLoadTest, UnknownModelType) {
  testing::TempModelDir dir;
  dir.Write("tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(Mentions(tokenizer.status(), "tokenizer.json"));
  EXPECT_TRUE(Mentions(tokenizer.status(), "WordPiece"));
}

TEST(TokenizerLoadTest, UnsupportedSplitRegex) {
  testing::TempModelDir dir;
  dir.Write("tokenizer.json", R"({
    "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}
  })");
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(Mentions(tokenizer.status(), "tokenizer.json"));
}

TEST(TokenizerLoadTest, MergeOfUnknownTokens) {
  testing::TempModelDir dir;
  dir.Write("tokenizer.json",
            R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a x"]}})");
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(tokenizer.status(), "\"a x\""));
}

TEST(TokenizerLoadTest, MalformedConfigIsNamed) {
  testing::TempModelDir dir;
  dir.Write("tokenizer.json", kTinyJson);
  dir.Write("tokenizer_config.json", "{not json");
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(tokenizer.status(), "tokenizer_config.json"));
}

TEST(TokenizerLoadTest, CorruptSentencePieceModel) {
  testing::TempModelDir dir;
  dir.Write("tokenizer.model", "this is not a protobuf");
  const auto tokenizer = Tokenizer::Load(dir.path());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(tokenizer.status(), "tokenizer.model"));
}

TEST(TokenizerLoadTest, UnknownBackend) {
  testing::TempModelDir dir;
  const auto tokenizer = Tokenizer::Load(dir.path(), "tiktoken");
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(tokenizer.status(), "tiktoken"));
}

TEST(TokenizerLoadTest, PrefersTokenizerJsonOverTokenizerModel) {
  KVSERVE_REQUIRE_STORIES260K();
  testing::TempModelDir dir;
  std::filesystem::copy_file(testing::Stories260kDir() + "/tokenizer.model",
                             dir.path() + "/tokenizer.model");
  auto sentencepiece = testing::LoadOrFail(dir.path());
  ASSERT_NE(sentencepiece, nullptr);
  EXPECT_EQ(sentencepiece->vocab_size(), 512);
  // No configs: the model's own BOS/EOS, and BOS added as LlamaTokenizer does by default.
  EXPECT_EQ(sentencepiece->bos_id(), 1);
  EXPECT_EQ(sentencepiece->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(sentencepiece->Encode("Once", true), (std::vector<int32_t>{1, 403}));

  dir.Write("tokenizer.json", kTinyJson);
  auto json = testing::LoadOrFail(dir.path());
  ASSERT_NE(json, nullptr);
  EXPECT_EQ(json->vocab_size(), 2);
  EXPECT_EQ(json->Encode("ab", true), (std::vector<int32_t>{0, 1}));
}

}  // namespace
}  // namespace kvserve
