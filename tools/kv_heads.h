// Offline KV-head compression ("Effectively Compress KV Heads for LLM", prefill_and_heads.md §2):
// merges each group of adjacent KV heads into one, from calibration activations, and folds the
// merge into the query and output projections, so the result is a plain GQA checkpoint.
//
// Keys use the RoPE-safe per-frequency complex PCA of §2.4 (it commutes with rotary embeddings);
// values the unrestricted PCA of §2.3; mean pooling (GQA's initialisation) is the baseline.
#pragma once

#include <ATen/ATen.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/llama_model.h"

namespace kvserve {

enum class HeadMergeMethod { kPca, kMeanPool };

// One layer's attention projections in Hugging Face's layout, float64:
// q [heads·d, D], k and v [kv_heads·d, D], o [D, heads·d].
struct AttentionProjections {
  at::Tensor q, k, v, o;
};

// Fraction of the calibration cache's energy (Σσ²) the merged heads keep; 1 means lossless.
struct LayerEnergy {
  double keys = 1;
  double values = 1;
};

// Per-layer second moments Σ_t x_t x_tᵀ (float64 [D, D]) of the attention inputs, from the stream
// fed in windows of the model's context (each window a fresh full cache).
std::vector<at::Tensor> CalibrationMoments(LlamaModel& model, std::span<const int32_t> stream);

// Merges one layer's KV heads into `new_kv_heads` (adjacent groups). REQUIRES: new_kv_heads divides
// the layer's KV heads; head_dim even. `energy` gets what PCA kept (mean pooling: left at 1).
AttentionProjections MergeKvHeads(const AttentionProjections& w, const at::Tensor& moment,
                                  int64_t num_heads, int64_t head_dim, int64_t new_kv_heads,
                                  HeadMergeMethod method, LayerEnergy* energy);

struct HeadCompressionOptions {
  int64_t kv_heads = 0;
  HeadMergeMethod method = HeadMergeMethod::kPca;
};

// Converts the Hugging Face folder `model_dir` into `out_dir` (config.json with the new
// num_key_value_heads, model.safetensors in the original dtype, tokenizer and generation files
// copied). INVALID_ARGUMENT naming the value for a head count that does not divide the query heads
// or the model's KV heads. Returns each layer's retained energy.
absl::StatusOr<std::vector<LayerEnergy>> CompressKvHeads(const std::string& model_dir,
                                                         std::span<const int32_t> calibration,
                                                         const HeadCompressionOptions& options,
                                                         const std::string& out_dir);

}  // namespace kvserve
