// Loading Hugging Face folders: sharded and F16/BF16 files, tied embeddings, and clear errors for
// missing or truncated files, missing or misshapen tensors and bad config values.
#include <gtest/gtest.h>
#include <torch/version.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cache/full_policy.h"
#include "model/llama_model.h"
#include "model/safetensors.h"
#include "tests/test_support.h"

namespace kvserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Logits after a fixed prompt.
at::Tensor PromptLogits(LlamaModel& model) {
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  FullPolicy policy(8);
  KvCache cache(model.cache_shape(), 8);
  SequenceInput input{&cache, &policy, prompt};
  return model.Forward({&input, 1}).cpu();
}

class LoadingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    dir_ = fs::temp_directory_path() /
           ("kvserve_loading_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ifstream in(testing::Stories260kDir() + "/config.json");
    config_ = json::parse(in);
    auto reader = SafetensorsReader::OpenFolder(testing::Stories260kDir());
    ASSERT_TRUE(reader.ok()) << reader.status();
    for (const auto& name : (*reader)->Names()) tensors_[name] = *(*reader)->Read(name, at::kFloat);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteConfig() { std::ofstream(dir_ / "config.json") << config_.dump(); }
  void WriteSingle(at::ScalarType dtype = at::kFloat) {
    std::map<std::string, at::Tensor> converted;
    for (const auto& [name, t] : tensors_) converted[name] = t.to(dtype);
    ASSERT_TRUE(WriteSafetensors((dir_ / "model.safetensors").string(), converted).ok());
  }

  static at::Tensor ReferenceLogits() {
    auto model = LlamaModel::Load(testing::Stories260kDir(), {});
    return PromptLogits(**model);
  }
  absl::Status LoadStatus() { return LlamaModel::Load(dir_.string(), {}).status(); }

  fs::path dir_;
  json config_;
  std::map<std::string, at::Tensor> tensors_;
};

TEST_F(LoadingTest, ShardedFolderGivesTheSameLogits) {
  WriteConfig();
  std::map<std::string, at::Tensor> first, second;
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  for (const auto& [name, t] : tensors_) {
    const bool in_first =
        name.find("layers.0.") != std::string::npos || name.find("embed") != std::string::npos;
    (in_first ? first : second)[name] = t;
    index["weight_map"][name] =
        in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  ASSERT_TRUE(WriteSafetensors((dir_ / "model-00001-of-00002.safetensors").string(), first).ok());
  ASSERT_TRUE(WriteSafetensors((dir_ / "model-00002-of-00002.safetensors").string(), second).ok());
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump();
  auto model = LlamaModel::Load(dir_.string(), {});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(at::equal(PromptLogits(**model), ReferenceLogits()));
}

TEST_F(LoadingTest, HalfPrecisionFilesLoadAndRunInEveryDtype) {
  WriteConfig();
  WriteSingle(at::kBFloat16);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    auto model = LlamaModel::Load(dir_.string(), {dtype, at::kCPU, 0});
    if (dtype == at::kHalf && TORCH_VERSION_MAJOR < 2) {  // no float16 matmul on the CPU there
      EXPECT_NE(model.status().message().find("float16"), std::string::npos) << model.status();
      continue;
    }
    ASSERT_TRUE(model.ok()) << model.status();
    auto logits = PromptLogits(**model);
    // bf16 weights: the same argmax as the float32 model, logits within bf16 rounding.
    EXPECT_EQ(logits.argmax().item<int64_t>(), ReferenceLogits().argmax().item<int64_t>());
    EXPECT_LT((logits - ReferenceLogits()).abs().max().item<float>(), 0.5f) << DtypeName(dtype);
  }
}

TEST_F(LoadingTest, TiedEmbeddingsUseTheEmbeddingAsOutputLayer) {
  config_["tie_word_embeddings"] = true;
  WriteConfig();
  ASSERT_TRUE(at::equal(tensors_["lm_head.weight"], tensors_["model.embed_tokens.weight"]));
  tensors_.erase("lm_head.weight");
  WriteSingle();
  auto model = LlamaModel::Load(dir_.string(), {});
  ASSERT_TRUE(model.ok()) << model.status();
  // stories260K's stored lm_head is a copy of its embedding (llama2.c ties them), so dropping it
  // and tying must give the same logits.
  EXPECT_TRUE(at::equal(PromptLogits(**model), ReferenceLogits()));
}

TEST_F(LoadingTest, MissingOrMisshapenTensorIsNamed) {
  WriteConfig();
  auto saved = tensors_["model.layers.2.mlp.up_proj.weight"];
  tensors_.erase("model.layers.2.mlp.up_proj.weight");
  WriteSingle();
  EXPECT_NE(LoadStatus().message().find("model.layers.2.mlp.up_proj.weight is missing"),
            std::string::npos)
      << LoadStatus();
  tensors_["model.layers.2.mlp.up_proj.weight"] = saved.narrow(0, 0, 100);
  WriteSingle();
  EXPECT_NE(LoadStatus().message().find("model.layers.2.mlp.up_proj.weight has shape [100, 64]"),
            std::string::npos)
      << LoadStatus();
}

TEST_F(LoadingTest, MissingAndTruncatedFilesAreNamed) {
  EXPECT_EQ(LoadStatus().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(LoadStatus().message().find("config.json"), std::string::npos);
  WriteConfig();
  EXPECT_NE(LoadStatus().message().find("no model.safetensors"), std::string::npos);
  WriteSingle();
  const auto path = dir_ / "model.safetensors";
  fs::resize_file(path, fs::file_size(path) - 1000);
  EXPECT_EQ(LoadStatus().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(LoadStatus().message().find("truncated"), std::string::npos) << LoadStatus();
  fs::resize_file(path, 4);
  EXPECT_NE(LoadStatus().message().find("truncated"), std::string::npos) << LoadStatus();
}

TEST_F(LoadingTest, BadConfigValuesAreNamed) {
  WriteSingle();
  auto expect_error = [&](const std::string& key, json value, const std::string& expected) {
    json saved = config_;
    config_[key] = value;
    WriteConfig();
    EXPECT_NE(LoadStatus().message().find(expected), std::string::npos) << LoadStatus();
    config_ = saved;
  };
  expect_error("model_type", "gpt2", "model_type 'gpt2' is not supported");
  expect_error("num_attention_heads", 6, "num_attention_heads (6) must be a multiple");
  expect_error("hidden_size", "wide", "'hidden_size' has the wrong type");
  expect_error("vocab_size", -3, "vocab_size must be > 0");
  expect_error("hidden_act", "gelu", "hidden_act 'gelu'");
  expect_error("rope_scaling", json{{"rope_type", "yarn"}, {"factor", 2.0}},
               "rope_scaling type 'yarn'");
  std::ofstream(dir_ / "config.json") << "{ not json";
  EXPECT_NE(LoadStatus().message().find("not a valid JSON"), std::string::npos);
}

TEST(DummyModelTest, PresetsHaveRealShapesAndUnknownNamesAreRefused) {
  for (const auto& name : DummyModelNames()) {
    auto config = DummyModelConfig(name);
    ASSERT_TRUE(config.ok()) << name;
    EXPECT_TRUE(ValidateModelConfig(*config).ok()) << name;
  }
  EXPECT_EQ(DummyModelConfig("llama-3-8b")->num_kv_heads, 8);
  EXPECT_EQ(DummyModelConfig("llama-2-7b")->num_kv_heads, 32);  // MHA
  EXPECT_NE(DummyModelConfig("gpt-5").status().message().find("unknown dummy model"),
            std::string::npos);
  auto model = LlamaModel::Load("dummy:stories260k", {});
  ASSERT_TRUE(model.ok());
  auto again = LlamaModel::Load("dummy:stories260k", {});
  EXPECT_TRUE(at::equal(PromptLogits(**model), PromptLogits(**again)));
}

}  // namespace
}  // namespace kvserve
