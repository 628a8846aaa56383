// kvserve-cli as a user runs it: generate --json reproduces golden.json, score reports golden's
// NLL, bad options exit 2 with a message.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/llama_model.h"
#include "tests/model/golden.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

struct Result {
  int exit_code;
  std::string out;
};

// Runs the CLI with `args` through the shell, capturing stdout (stderr too if asked).
Result RunCli(const std::string& args, bool with_stderr = false) {
  const std::string command =
      std::string(KVSERVE_CLI_PATH) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) out.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

std::string Quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

TEST(CliTest, GenerateJsonReproducesGolden) {
  KVSERVE_REQUIRE_STORIES260K();
  for (const auto& c : testing::LoadGoldenCases()) {
    auto result = RunCli("generate --json --ignore-eos --max-new-tokens 200 --model " +
                         Quote(testing::Stories260kDir()) + " --prompt " + Quote(c.prompt));
    ASSERT_EQ(result.exit_code, 0) << c.prompt;
    auto json = nlohmann::json::parse(result.out);
    EXPECT_EQ(json["prompt_ids"].get<std::vector<int32_t>>(), c.prompt_ids);
    EXPECT_EQ(json["token_ids"].get<std::vector<int32_t>>(), c.greedy_ids);
    // The stream's text is the detokenized continuation: HF decoded the ids alone, which drops the
    // first word's leading space; here it follows the prompt, so it keeps it.
    EXPECT_NE(json["text"].get<std::string>().find(c.text.substr(0, 20)), std::string::npos);
  }
}

TEST(CliTest, StreamsPlainText) {
  KVSERVE_REQUIRE_STORIES260K();
  auto result = RunCli("generate --max-new-tokens 12 --model " + Quote(testing::Stories260kDir()) +
                       " --prompt 'Once upon a time'");
  ASSERT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out.rfind(", there was a little girl named Lily", 0), 0u) << result.out;
}

TEST(CliTest, ScoreReportsPerplexity) {
  KVSERVE_REQUIRE_STORIES260K();
  const std::string path = ::testing::TempDir() + "/kvserve_score.txt";
  std::ofstream(path) << "Once upon a time, there was a little girl named Lily.";
  auto result =
      RunCli("score --json --model " + Quote(testing::Stories260kDir()) + " --text-file " + path);
  ASSERT_EQ(result.exit_code, 0);
  auto json = nlohmann::json::parse(result.out);
  EXPECT_GT(json["perplexity"].get<double>(), 1.0);
  EXPECT_LT(json["perplexity"].get<double>(), 20.0);  // a story sentence the model knows well
  EXPECT_NEAR(std::exp(json["mean_nll"].get<double>()), json["perplexity"].get<double>(), 1e-9);
}

TEST(CliTest, EvalComparesCritiPrefillWithDensePrefill) {
  KVSERVE_REQUIRE_STORIES260K();
  const std::string data = Quote(testing::SharedDir() + "/data/tinystories/valid.txt");
  const std::string model = " --model " + Quote(testing::Stories260kDir()) + " --data " + data;
  auto result = RunCli("eval --prefill critiprefill" + model +
                       " --policies H2O --budgets 64 --lengths 256 --kept-blocks 2 --windows 1 "
                       "--continuation 8");
  ASSERT_EQ(result.exit_code, 0) << result.out;
  EXPECT_NE(result.out.find("| FULL | — | 256 | CritiPrefill k=2 |"), std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("| H2O | 64 | 256 | dense |"), std::string::npos) << result.out;
  auto bad =
      RunCli("eval --prefill critiprefill --critiprefill-params block_size=48" + model, true);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("prefill.critiprefill.block_size"), std::string::npos) << bad.out;
  EXPECT_EQ(RunCli("eval --prefill sparse", true).exit_code, 2);
}

TEST(CliTest, BadOptionsExitTwoWithAMessage) {
  auto unknown = RunCli("generate --no-such-option 3", true);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.out.find("unknown option --no-such-option"), std::string::npos);
  auto malformed = RunCli("generate --max-new-tokens many", true);
  EXPECT_EQ(malformed.exit_code, 2);
  EXPECT_NE(malformed.out.find("--max-new-tokens"), std::string::npos);
  auto missing_model = RunCli("generate --model /nonexistent --prompt hi", true);
  EXPECT_EQ(missing_model.exit_code, 1);
  EXPECT_NE(missing_model.out.find("/nonexistent"), std::string::npos);
  EXPECT_EQ(RunCli("frobnicate", true).exit_code, 2);
}

// libsentencepiece and the system libprotobuf (which libtorch loads) in one process: the
// sentencepiece backend must load and agree with golden.
TEST(CliTest, SentencepieceBackendWorksBesideTorch) {
  KVSERVE_REQUIRE_STORIES260K();
  ASSERT_TRUE(LlamaModel::Load("dummy:stories260k", {}).ok());
  auto tokenizer = Tokenizer::Load(testing::Stories260kDir(), "sentencepiece");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  for (const auto& c : testing::LoadGoldenCases()) {
    EXPECT_EQ((*tokenizer)->Encode(c.prompt, true), c.prompt_ids);
  }
}

}  // namespace
}  // namespace kvserve
