// The parameters of a Llama-family decoder, loaded from safetensors or drawn at random for dummy
// models. The q/k/v and gate/up projections are concatenated at load so each is one matmul.
#pragma once

#include <ATen/ATen.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace kvserve {

struct LayerWeights {
  at::Tensor input_norm;    // [hidden]
  at::Tensor qkv;           // [(heads + 2 kv_heads) head_dim, hidden]
  at::Tensor qkv_bias;      // same rows, or undefined
  at::Tensor out;           // [hidden, heads head_dim]
  at::Tensor out_bias;      // [hidden] or undefined
  at::Tensor post_norm;     // [hidden]
  at::Tensor gate_up;       // [2 intermediate, hidden]
  at::Tensor gate_up_bias;  // or undefined
  at::Tensor down;          // [hidden, intermediate]
  at::Tensor down_bias;     // or undefined
};

struct LlamaWeights {
  at::Tensor embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  at::Tensor final_norm;  // [hidden]
  at::Tensor lm_head;     // [vocab, hidden]; the embedding itself when tied
};

// Loads from DIR's safetensors. Errors name a tensor that is missing or has the wrong shape.
absl::StatusOr<LlamaWeights> LoadLlamaWeights(const std::string& dir, const ModelConfig& config,
                                              const at::TensorOptions& options);

// Random weights (normal, std 0.02; norms 1) from a fixed seed, made directly on the device.
LlamaWeights RandomLlamaWeights(const ModelConfig& config, const at::TensorOptions& options,
                                uint64_t seed);

}  // namespace kvserve
