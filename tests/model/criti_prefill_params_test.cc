// CritiPrefill's parameters (model/criti_prefill_params.h): the spec's defaults, and every bad
// value refused with INVALID_ARGUMENT naming its field.
#include "model/criti_prefill_params.h"

#include <gtest/gtest.h>

namespace kvserve {
namespace {

constexpr CritiPrefillLimits kLimits{/*num_layers=*/32, /*prefill_chunk=*/2048};

TEST(CritiPrefillParamsTest, DefaultsAreTheSpecs) {
  auto p = ResolveCritiPrefillParams({}, kLimits);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, (CritiPrefillParams{512, 32, 64, 0, 0, 4096, 1, true}));
  EXPECT_EQ(CritiPrefillParams::kFusionWeight, 0.25);
  EXPECT_EQ(DescribeCritiPrefillParams().size(), 8u);
}

TEST(CritiPrefillParamsTest, SetValuesAreTaken) {
  auto p = ResolveCritiPrefillParams({{"segment_size", 64},
                                      {"block_size", 8},
                                      {"kept_blocks", 4},
                                      {"first_blocks", 1},
                                      {"local_blocks", 1},
                                      {"dense_prefix_tokens", 0},
                                      {"dense_layers", 0},
                                      {"layer_fusion", 0}},
                                     kLimits);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, (CritiPrefillParams{64, 8, 4, 1, 1, 0, 0, false}));
  // τ below k·B is clamped per segment, not refused (§1.3).
  EXPECT_TRUE(ResolveCritiPrefillParams({{"dense_prefix_tokens", 512}}, kLimits).ok());
}

struct BadCase {
  std::map<std::string, double> params;
  std::string message;  // the error must start with it
};

TEST(CritiPrefillParamsTest, EachBadValueNamesItsField) {
  const std::vector<BadCase> cases = {
      {{{"segment", 64}}, "prefill.critiprefill.segment is not a parameter of CRITIPREFILL"},
      {{{"segment_size", 0}}, "prefill.critiprefill.segment_size must be >= 1, got 0"},
      {{{"segment_size", 64.5}}, "prefill.critiprefill.segment_size must be an integer"},
      {{{"segment_size", 4096}}, "prefill.critiprefill.segment_size must be <= 2048"},
      {{{"block_size", 0}}, "prefill.critiprefill.block_size must be >= 1"},
      {{{"block_size", 48}}, "prefill.critiprefill.block_size block_size (48) must divide"},
      {{{"segment_size", 100}}, "prefill.critiprefill.segment_size block_size (32) must divide"},
      {{{"kept_blocks", 0}}, "prefill.critiprefill.kept_blocks must be >= 1"},
      {{{"kept_blocks", -3}}, "prefill.critiprefill.kept_blocks must be >= 1"},
      {{{"first_blocks", -1}}, "prefill.critiprefill.first_blocks must be >= 0"},
      {{{"local_blocks", -1}}, "prefill.critiprefill.local_blocks must be >= 0"},
      {{{"kept_blocks", 2}, {"first_blocks", 2}, {"local_blocks", 1}},
       "prefill.critiprefill.local_blocks first_blocks + local_blocks (3) must be <= kept_blocks"},
      {{{"kept_blocks", 2}, {"first_blocks", 3}}, "prefill.critiprefill.first_blocks first_blocks"},
      {{{"dense_prefix_tokens", -512}}, "prefill.critiprefill.dense_prefix_tokens must be >= 0"},
      {{{"dense_prefix_tokens", 1000}},
       "prefill.critiprefill.dense_prefix_tokens must be a multiple of segment_size (512)"},
      {{{"dense_layers", 33}}, "prefill.critiprefill.dense_layers must be in [0, 32], got 33"},
      {{{"dense_layers", -1}}, "prefill.critiprefill.dense_layers must be in [0, 32]"},
      {{{"layer_fusion", 2}}, "prefill.critiprefill.layer_fusion must be in [0, 1], got 2"},
  };
  for (const BadCase& c : cases) {
    auto p = ResolveCritiPrefillParams(c.params, kLimits);
    ASSERT_FALSE(p.ok()) << c.message;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(p.status().message()).rfind(c.message, 0), 0u) << p.status();
  }
  // The default segment size against a smaller prefill chunk names the field and says why.
  auto p = ResolveCritiPrefillParams({}, {32, 256});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(
      p.status().message(),
      "prefill.critiprefill.segment_size (default) must be <= 256, the engine's prefill chunk "
      "(chunks are cut on segment boundaries), got 512");
}

}  // namespace
}  // namespace kvserve
