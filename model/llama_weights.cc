#include "model/llama_weights.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "model/safetensors.h"

namespace kvserve {
namespace {

// Reads named tensors of known shapes, remembering the first error.
class TensorLoader {
 public:
  TensorLoader(const SafetensorsReader& reader, const at::TensorOptions& options)
      : reader_(reader), options_(options) {}

  at::Tensor Get(const std::string& name, std::vector<int64_t> shape) {
    if (!status_.ok()) return {};
    if (!reader_.Has(name)) {
      status_ = absl::NotFoundError(absl::StrCat("tensor ", name, " is missing"));
      return {};
    }
    if (reader_.Shape(name) != shape) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " has shape [", absl::StrJoin(reader_.Shape(name), ", "),
                       "], expected [", absl::StrJoin(shape, ", "), "]"));
      return {};
    }
    auto tensor = reader_.Read(name, options_);
    if (!tensor.ok()) {
      status_ = tensor.status();
      return {};
    }
    return *tensor;
  }
  at::Tensor GetIf(bool present, const std::string& name, std::vector<int64_t> shape) {
    return present ? Get(name, std::move(shape)) : at::Tensor();
  }
  const absl::Status& status() const { return status_; }

 private:
  const SafetensorsReader& reader_;
  at::TensorOptions options_;
  absl::Status status_;
};

at::Tensor CatDefined(std::initializer_list<at::Tensor> parts) {
  for (const auto& p : parts) {
    if (!p.defined()) return {};
  }
  return at::cat(parts, 0);
}

}  // namespace

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const std::string& dir, const ModelConfig& c,
                                              const at::TensorOptions& options) {
  auto reader = SafetensorsReader::OpenFolder(dir);
  if (!reader.ok()) return reader.status();
  TensorLoader load(**reader, options);
  const int64_t h = c.hidden_size, q_rows = c.num_heads * c.head_dim;
  const int64_t kv_rows = c.num_kv_heads * c.head_dim, inter = c.intermediate_size;

  LlamaWeights w;
  w.embed = load.Get("model.embed_tokens.weight", {c.vocab_size, h});
  for (int64_t i = 0; i < c.num_layers && load.status().ok(); ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    const std::string attn = p + "self_attn.", mlp = p + "mlp.";
    LayerWeights layer;
    layer.input_norm = load.Get(p + "input_layernorm.weight", {h});
    layer.qkv = CatDefined({load.Get(attn + "q_proj.weight", {q_rows, h}),
                            load.Get(attn + "k_proj.weight", {kv_rows, h}),
                            load.Get(attn + "v_proj.weight", {kv_rows, h})});
    layer.qkv_bias = CatDefined({load.GetIf(c.attention_bias, attn + "q_proj.bias", {q_rows}),
                                 load.GetIf(c.attention_bias, attn + "k_proj.bias", {kv_rows}),
                                 load.GetIf(c.attention_bias, attn + "v_proj.bias", {kv_rows})});
    layer.out = load.Get(attn + "o_proj.weight", {h, q_rows});
    layer.out_bias = load.GetIf(c.attention_bias, attn + "o_proj.bias", {h});
    layer.post_norm = load.Get(p + "post_attention_layernorm.weight", {h});
    layer.gate_up = CatDefined({load.Get(mlp + "gate_proj.weight", {inter, h}),
                                load.Get(mlp + "up_proj.weight", {inter, h})});
    layer.gate_up_bias = CatDefined({load.GetIf(c.mlp_bias, mlp + "gate_proj.bias", {inter}),
                                     load.GetIf(c.mlp_bias, mlp + "up_proj.bias", {inter})});
    layer.down = load.Get(mlp + "down_proj.weight", {h, inter});
    layer.down_bias = load.GetIf(c.mlp_bias, mlp + "down_proj.bias", {h});
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = load.Get("model.norm.weight", {h});
  // Tied models usually omit lm_head; some still store a copy, which then wins.
  if (c.tie_word_embeddings && !(*reader)->Has("lm_head.weight")) {
    w.lm_head = w.embed;
  } else {
    w.lm_head = load.Get("lm_head.weight", {c.vocab_size, h});
  }
  if (!load.status().ok()) {
    return absl::Status(load.status().code(), absl::StrCat(dir, ": ", load.status().message()));
  }
  return w;
}

LlamaWeights RandomLlamaWeights(const ModelConfig& c, const at::TensorOptions& options,
                                uint64_t seed) {
  at::manual_seed(seed);
  auto normal = [&](std::vector<int64_t> shape) { return at::randn(shape, options) * 0.02; };
  auto ones = [&](int64_t n) { return at::ones({n}, options); };
  const int64_t h = c.hidden_size, q_rows = c.num_heads * c.head_dim;
  const int64_t kv_rows = c.num_kv_heads * c.head_dim, inter = c.intermediate_size;
  LlamaWeights w;
  w.embed = normal({c.vocab_size, h});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights layer;
    layer.input_norm = ones(h);
    layer.qkv = normal({q_rows + 2 * kv_rows, h});
    layer.out = normal({h, q_rows});
    layer.post_norm = ones(h);
    layer.gate_up = normal({2 * inter, h});
    layer.down = normal({h, inter});
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = ones(h);
  w.lm_head = c.tie_word_embeddings ? w.embed : normal({c.vocab_size, h});
  return w;
}

}  // namespace kvserve
