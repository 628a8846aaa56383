// The shape and hyper-parameters of a Llama-family model, read from a Hugging Face config.json or
// taken from a named preset for `dummy:NAME` models (random weights, real shapes).
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kvserve {

struct RopeScaling {
  enum class Kind { kNone, kLinear, kLlama3 };
  Kind kind = Kind::kNone;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string name;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
};

// Reads DIR/config.json (and DIR/generation_config.json for EOS ids when present). Errors name the
// file and the field: missing file, bad JSON, unsupported model_type or hidden_act, bad values.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// Presets for dummy models: llama-2-7b, llama-3-8b, llama-3.1-8b, llama-3.2-1b, tinyllama-1.1b,
// stories260k.
absl::StatusOr<ModelConfig> DummyModelConfig(const std::string& name);
std::vector<std::string> DummyModelNames();

// Checks the shape rules every loaded or preset config must satisfy (positive sizes, heads divide).
absl::Status ValidateModelConfig(const ModelConfig& config);

}  // namespace kvserve
