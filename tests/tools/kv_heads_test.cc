// KV-head compression: lossless when nothing is merged, lossless under RoPE when a group's keys are
// per-frequency complex multiples of each other (the RoPE-safe rule of §2.4), retained energy
// rising with the head count, and clear refusals.
#include "tools/kv_heads.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cache/full_policy.h"
#include "model/safetensors.h"
#include "tests/test_support.h"

namespace kvserve {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kHidden = 32, kHeads = 4, kHeadDim = 8, kLayers = 2, kVocab = 64;

// A random MHA model folder; `make_redundant` makes heads 2i+1 copies of heads 2i up to a complex
// scaling per RoPE frequency pair (keys) and a scale (values), so 4 → 2 KV heads loses nothing.
std::string WriteRandomModel(const std::string& name, bool make_redundant) {
  const fs::path dir =
      fs::temp_directory_path() / ("kvserve_kvheads_" + std::to_string(::getpid()) + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  nlohmann::json config = {{"model_type", "llama"},         {"hidden_size", kHidden},
                           {"intermediate_size", 48},       {"num_hidden_layers", kLayers},
                           {"num_attention_heads", kHeads}, {"num_key_value_heads", kHeads},
                           {"vocab_size", kVocab},          {"max_position_embeddings", 64},
                           {"rope_theta", 100.0},           {"rms_norm_eps", 1e-5}};
  std::ofstream(dir / "config.json") << config.dump();
  at::manual_seed(5);
  std::map<std::string, at::Tensor> t;
  auto randn = [](std::vector<int64_t> shape) { return at::randn(shape) * 0.3; };
  t["model.embed_tokens.weight"] = randn({kVocab, kHidden});
  t["lm_head.weight"] = randn({kVocab, kHidden});
  t["model.norm.weight"] = at::ones({kHidden});
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto k = randn({kHeads * kHeadDim, kHidden}), v = randn({kHeads * kHeadDim, kHidden});
    if (make_redundant) {
      const int64_t half = kHeadDim / 2;
      for (int64_t head = 1; head < kHeads; head += 2) {
        auto source = k.narrow(0, (head - 1) * kHeadDim, kHeadDim).view({2, half, kHidden});
        auto angle = at::rand({half, 1}) * 6.28, scale = 0.5 + at::rand({half, 1});
        auto re = source.select(0, 0), im = source.select(0, 1);
        auto target = k.narrow(0, head * kHeadDim, kHeadDim).view({2, half, kHidden});
        target.select(0, 0).copy_(scale * (at::cos(angle) * re - at::sin(angle) * im));
        target.select(0, 1).copy_(scale * (at::sin(angle) * re + at::cos(angle) * im));
        v.narrow(0, head * kHeadDim, kHeadDim)
            .copy_(-1.7 * v.narrow(0, (head - 1) * kHeadDim, kHeadDim));
      }
    }
    t[p + "self_attn.q_proj.weight"] = randn({kHeads * kHeadDim, kHidden});
    t[p + "self_attn.k_proj.weight"] = k;
    t[p + "self_attn.v_proj.weight"] = v;
    t[p + "self_attn.o_proj.weight"] = randn({kHidden, kHeads * kHeadDim});
    t[p + "mlp.gate_proj.weight"] = randn({48, kHidden});
    t[p + "mlp.up_proj.weight"] = randn({48, kHidden});
    t[p + "mlp.down_proj.weight"] = randn({kHidden, 48});
    t[p + "input_layernorm.weight"] = at::ones({kHidden});
    t[p + "post_attention_layernorm.weight"] = at::ones({kHidden});
  }
  EXPECT_TRUE(WriteSafetensors((dir / "model.safetensors").string(), t).ok());
  return dir.string();
}

std::vector<int32_t> Tokens(int64_t n, int64_t seed) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i)
    ids.push_back(static_cast<int32_t>((i * 7919 + seed * 31) % kVocab));
  return ids;
}

// Logits for every token of a 40-token sequence.
at::Tensor AllLogits(const std::string& dir) {
  auto model = LlamaModel::Load(dir, {});
  EXPECT_TRUE(model.ok()) << model.status();
  const auto ids = Tokens(40, 9);
  FullPolicy policy(40);
  KvCache cache((*model)->cache_shape(), 40);
  SequenceInput input{&cache, &policy, ids, true};
  return (*model)->Forward({&input, 1});
}

// Removes the test's model folders and their converted copies.
class KvHeadsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    const std::string prefix = "kvserve_kvheads_" + std::to_string(::getpid());
    for (const auto& entry : fs::directory_iterator(fs::temp_directory_path())) {
      if (entry.path().filename().string().rfind(prefix, 0) == 0) fs::remove_all(entry.path());
    }
  }
};

double RelativeError(const at::Tensor& out, const at::Tensor& ref) {
  return ((out - ref).norm() / ref.norm()).item<double>();
}

TEST_F(KvHeadsTest, KeepingEveryHeadReproducesTheModel) {
  const auto dir = WriteRandomModel("same", false);
  auto energy = CompressKvHeads(dir, Tokens(200, 1), {kHeads, HeadMergeMethod::kPca}, dir + "_out");
  ASSERT_TRUE(energy.ok()) << energy.status();
  for (const auto& e : *energy) {
    EXPECT_NEAR(e.keys, 1.0, 1e-9);
    EXPECT_NEAR(e.values, 1.0, 1e-9);
  }
  EXPECT_LT(RelativeError(AllLogits(dir + "_out"), AllLogits(dir)), 1e-5);
}

TEST_F(KvHeadsTest, RedundantHeadsMergeLosslesslyUnderRope) {
  const auto dir = WriteRandomModel("redundant", true);
  auto pca = CompressKvHeads(dir, Tokens(200, 2), {2, HeadMergeMethod::kPca}, dir + "_pca");
  ASSERT_TRUE(pca.ok()) << pca.status();
  for (const auto& e : *pca) EXPECT_NEAR(e.keys, 1.0, 1e-9);
  const auto reference = AllLogits(dir);
  auto converted = LlamaModel::Load(dir + "_pca", {});
  ASSERT_TRUE(converted.ok());
  EXPECT_EQ((*converted)->config().num_kv_heads, 2);
  // The rotation commutes with the per-frequency complex merge: exact up to rounding.
  EXPECT_LT(RelativeError(AllLogits(dir + "_pca"), reference), 1e-5);
  // Mean pooling ignores the per-frequency phases and loses information.
  ASSERT_TRUE(
      CompressKvHeads(dir, Tokens(200, 2), {2, HeadMergeMethod::kMeanPool}, dir + "_mean").ok());
  EXPECT_GT(RelativeError(AllLogits(dir + "_mean"), reference), 1e-2);
}

TEST_F(KvHeadsTest, RetainedEnergyRisesWithTheHeadCount) {
  const auto dir = WriteRandomModel("energy", false);
  double previous_keys = 0, previous_values = 0;
  for (int64_t heads : {1, 2, 4}) {
    auto energy = CompressKvHeads(dir, Tokens(300, 3), {heads, HeadMergeMethod::kPca},
                                  dir + "_" + std::to_string(heads));
    ASSERT_TRUE(energy.ok());
    double keys = 0, values = 0;
    for (const auto& e : *energy) keys += e.keys / kLayers, values += e.values / kLayers;
    EXPECT_GT(keys, previous_keys) << heads;
    EXPECT_GT(values, previous_values) << heads;
    previous_keys = keys, previous_values = values;
  }
}

TEST_F(KvHeadsTest, RefusesHeadCountsThatDoNotDivide) {
  const auto dir = WriteRandomModel("refuse", false);
  auto three = CompressKvHeads(dir, Tokens(50, 4), {3, HeadMergeMethod::kPca}, dir + "_x");
  EXPECT_EQ(three.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(three.status().message().find("--kv-heads 3 must divide the model's query heads (4)"),
            std::string::npos)
      << three.status();
  EXPECT_FALSE(CompressKvHeads(dir, Tokens(50, 4), {0, HeadMergeMethod::kPca}, dir + "_x").ok());
}

}  // namespace
}  // namespace kvserve
