// The reference attention (the oracle of every later kernel) against a naive per-query loop, for
// MHA, GQA and MQA; RoPE scaling rules against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "model/attention_backend.h"
#include "model/rope.h"

namespace kvserve {
namespace {

// Attention of each query against its visible keys, one head at a time.
at::Tensor NaiveAttention(const AttentionInput& in) {
  const int64_t n = in.queries.size(0), heads = in.queries.size(1), dim = in.queries.size(2);
  const int64_t kv_heads = in.keys.size(0), m = in.keys.size(1);
  auto out = at::zeros_like(in.queries);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / (heads / kv_heads);
      auto keys = in.keys[g].narrow(0, 0, m - n + i + 1);
      auto values = in.values[g].narrow(0, 0, m - n + i + 1);
      auto weights = at::softmax(at::matmul(keys, in.queries[i][h]) / std::sqrt(double(dim)), 0);
      out[i][h] = at::matmul(weights, values);
    }
  }
  return out;
}

class AttentionShapes : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(AttentionShapes, MatchesNaiveLoopAndReportsKeyMass) {
  const auto [heads, kv_heads] = GetParam();
  at::manual_seed(0);
  auto backend = MakeReferenceAttention();
  // A 3-token chunk after 4 cached tokens, and a single decode token after 9.
  std::vector<AttentionInput> batch = {
      {at::randn({3, heads, 16}), at::randn({kv_heads, 7, 16}), at::randn({kv_heads, 7, 16}), true},
      {at::randn({1, heads, 16}), at::randn({kv_heads, 10, 16}), at::randn({kv_heads, 10, 16}),
       false}};
  auto outputs = backend->Attend(batch);
  ASSERT_EQ(outputs.size(), 2u);
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_TRUE(at::allclose(outputs[i].out, NaiveAttention(batch[i]), 1e-5, 1e-5));
  }
  // Each query distributes a mass of 1 over its keys: a KV head's total is group × queries.
  ASSERT_TRUE(outputs[0].key_mass.defined());
  EXPECT_EQ(outputs[0].key_mass.sizes(), (at::IntArrayRef{kv_heads, 7}));
  auto totals = outputs[0].key_mass.sum(1);
  EXPECT_TRUE(at::allclose(totals, at::full({kv_heads}, 3.0 * heads / kv_heads), 1e-5, 1e-5));
  // The last key is seen by the last query only.
  EXPECT_GT(outputs[0].key_mass[0][6].item<float>(), 0);
  EXPECT_FALSE(outputs[1].key_mass.defined());
}

INSTANTIATE_TEST_SUITE_P(MhaGqaMqa, AttentionShapes,
                         ::testing::Values(std::make_pair(4, 4), std::make_pair(8, 2),
                                           std::make_pair(4, 1)));

ModelConfig RopeConfig() {
  ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000.0;
  return c;
}

TEST(RopeTest, LinearScalingIsPositionDivision) {
  ModelConfig plain = RopeConfig(), linear = RopeConfig();
  linear.rope_scaling.kind = RopeScaling::Kind::kLinear;
  linear.rope_scaling.factor = 4.0;
  RotaryEmbedding a(plain, at::kCPU), b(linear, at::kCPU);
  auto x = at::randn({3, 2, 64});
  auto positions = at::tensor(std::vector<int64_t>{0, 5, 17});
  EXPECT_TRUE(at::allclose(b.Apply(x, positions * 4, 0), a.Apply(x, positions, 0), 1e-4, 1e-4));
}

TEST(RopeTest, Llama3ScalingKeepsHighAndDividesLowFrequencies) {
  ModelConfig plain = RopeConfig(), llama3 = RopeConfig();
  llama3.rope_scaling = {RopeScaling::Kind::kLlama3, 8.0, 1.0, 4.0, 8192};
  auto base = RotaryEmbedding(plain, at::kCPU).inverse_frequencies();
  auto scaled = RotaryEmbedding(llama3, at::kCPU).inverse_frequencies();
  for (int64_t i = 0; i < base.size(0); ++i) {
    const double f = base[i].item<double>(), s = scaled[i].item<double>();
    const double wavelen = 2 * M_PI / f;
    if (wavelen < 8192 / 4.0) {
      EXPECT_DOUBLE_EQ(s, f) << i;  // high frequency: unchanged
    } else if (wavelen > 8192 / 1.0) {
      EXPECT_NEAR(s, f / 8, 1e-12) << i;  // low frequency: divided by the factor
    } else {
      const double smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(s, (1 - smooth) * f / 8 + smooth * f, 1e-9) << i;
    }
  }
}

TEST(RopeTest, RotationPreservesNormsAndRelativePositions) {
  RotaryEmbedding rope(RopeConfig(), at::kCPU);
  auto q = at::randn({1, 1, 64}), k = at::randn({1, 1, 64});
  auto at_pos = [&](const at::Tensor& x, int64_t p) {
    return rope.Apply(x, at::tensor(std::vector<int64_t>{p}), 0).flatten();
  };
  EXPECT_NEAR(at_pos(q, 123).norm().item<float>(), q.norm().item<float>(), 1e-4);
  // q·k depends only on the distance between their positions.
  const float near = at_pos(q, 10).dot(at_pos(k, 7)).item<float>();
  const float far = at_pos(q, 1010).dot(at_pos(k, 1007)).item<float>();
  EXPECT_NEAR(near, far, 1e-3);
}

}  // namespace
}  // namespace kvserve
