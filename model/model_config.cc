#include "model/model_config.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace kvserve {
namespace {

using nlohmann::json;

absl::StatusOr<json> ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  json parsed = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a valid JSON object"));
  }
  return parsed;
}

// Reads an optional field of the given JSON type, or fails naming it.
template <typename T>
absl::Status ReadField(const json& object, const std::string& file, const std::string& key,
                       T* out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return absl::OkStatus();
  try {
    *out = it->get<T>();
  } catch (const json::exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": field '", key, "' has the wrong type: ", it->dump()));
  }
  return absl::OkStatus();
}

// eos_token_id may be a number or a list of numbers.
absl::Status ReadEosIds(const json& object, const std::string& file, std::vector<int32_t>* out) {
  auto it = object.find("eos_token_id");
  if (it == object.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_integer()) {
    *out = {it->get<int32_t>()};
  } else if (it->is_array() && std::all_of(it->begin(), it->end(),
                                           [](const json& v) { return v.is_number_integer(); })) {
    *out = it->get<std::vector<int32_t>>();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": field 'eos_token_id' must be an integer or a list of integers"));
  }
  return absl::OkStatus();
}

absl::Status ReadRopeScaling(const json& config, const std::string& file, RopeScaling* out) {
  auto it = config.find("rope_scaling");
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": 'rope_scaling' must be an object"));
  }
  std::string type;
  if (auto status = ReadField(*it, file, "rope_type", &type); !status.ok()) return status;
  if (type.empty()) {
    if (auto status = ReadField(*it, file, "type", &type); !status.ok()) return status;
  }
  if (type == "default") return absl::OkStatus();
  if (type == "linear") {
    out->kind = RopeScaling::Kind::kLinear;
  } else if (type == "llama3") {
    out->kind = RopeScaling::Kind::kLlama3;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(file, ": rope_scaling type '", type,
                                                   "' is not supported (default, linear, llama3)"));
  }
  for (auto status : {ReadField(*it, file, "factor", &out->factor),
                      ReadField(*it, file, "low_freq_factor", &out->low_freq_factor),
                      ReadField(*it, file, "high_freq_factor", &out->high_freq_factor),
                      ReadField(*it, file, "original_max_position_embeddings",
                                &out->original_max_position_embeddings)}) {
    if (!status.ok()) return status;
  }
  if (!(out->factor > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": rope_scaling.factor must be > 0"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelConfig(const ModelConfig& c) {
  const std::pair<const char*, int64_t> positive[] = {
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [name, value] : positive) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(c.name, ": ", name, " must be > 0, got ", value));
    }
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(c.name, ": num_attention_heads (", c.num_heads,
                                                   ") must be a multiple of num_key_value_heads (",
                                                   c.num_kv_heads, ")"));
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.name, ": head_dim must be even for RoPE, got ", c.head_dim));
  }
  if (!(c.rms_norm_eps > 0) || !(c.rope_theta > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.name, ": rms_norm_eps and rope_theta must be > 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string file = model_dir + "/config.json";
  auto parsed = ReadJson(file);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;

  std::string model_type;
  if (auto status = ReadField(j, file, "model_type", &model_type); !status.ok()) return status;
  if (model_type != "llama" && model_type != "mistral") {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": model_type '", model_type, "' is not supported (llama, mistral)"));
  }
  std::string act = "silu";
  if (auto status = ReadField(j, file, "hidden_act", &act); !status.ok()) return status;
  if (act != "silu") {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": hidden_act '", act, "' is not supported (silu)"));
  }

  ModelConfig c;
  c.name = std::filesystem::path(model_dir).lexically_normal().filename().string();
  if (c.name.empty()) c.name = std::filesystem::path(model_dir).parent_path().filename().string();
  c.max_position_embeddings = 2048;
  for (auto status : {
           ReadField(j, file, "hidden_size", &c.hidden_size),
           ReadField(j, file, "intermediate_size", &c.intermediate_size),
           ReadField(j, file, "num_hidden_layers", &c.num_layers),
           ReadField(j, file, "num_attention_heads", &c.num_heads),
           ReadField(j, file, "num_key_value_heads", &c.num_kv_heads),
           ReadField(j, file, "head_dim", &c.head_dim),
           ReadField(j, file, "vocab_size", &c.vocab_size),
           ReadField(j, file, "max_position_embeddings", &c.max_position_embeddings),
           ReadField(j, file, "rms_norm_eps", &c.rms_norm_eps),
           ReadField(j, file, "rope_theta", &c.rope_theta),
           ReadField(j, file, "tie_word_embeddings", &c.tie_word_embeddings),
           ReadField(j, file, "attention_bias", &c.attention_bias),
           ReadField(j, file, "mlp_bias", &c.mlp_bias),
           ReadField(j, file, "bos_token_id", &c.bos_token_id),
           ReadEosIds(j, file, &c.eos_token_ids),
           ReadRopeScaling(j, file, &c.rope_scaling),
       }) {
    if (!status.ok()) return status;
  }
  if (c.num_kv_heads == 0) c.num_kv_heads = c.num_heads;  // older configs: MHA
  if (c.head_dim == 0 && c.num_heads > 0) c.head_dim = c.hidden_size / c.num_heads;

  // generation_config.json's EOS list, when present, is what generation stops on.
  const std::string generation_file = model_dir + "/generation_config.json";
  if (std::filesystem::exists(generation_file)) {
    auto generation = ReadJson(generation_file);
    if (!generation.ok()) return generation.status();
    if (auto status = ReadEosIds(*generation, generation_file, &c.eos_token_ids); !status.ok()) {
      return status;
    }
  }
  if (auto status = ValidateModelConfig(c); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", status.message()));
  }
  return c;
}

std::vector<std::string> DummyModelNames() {
  return {"llama-2-7b",   "llama-3-8b",     "llama-3.1-8b",
          "llama-3.2-1b", "tinyllama-1.1b", "stories260k"};
}

absl::StatusOr<ModelConfig> DummyModelConfig(const std::string& name) {
  ModelConfig c;
  c.name = "dummy:" + name;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  if (name == "llama-2-7b") {
    c.hidden_size = 4096, c.intermediate_size = 11008, c.num_layers = 32, c.num_heads = 32;
    c.num_kv_heads = 32, c.vocab_size = 32000, c.max_position_embeddings = 4096;
  } else if (name == "llama-3-8b" || name == "llama-3.1-8b") {
    c.hidden_size = 4096, c.intermediate_size = 14336, c.num_layers = 32, c.num_heads = 32;
    c.num_kv_heads = 8, c.vocab_size = 128256, c.max_position_embeddings = 8192;
    c.rope_theta = 500000.0, c.bos_token_id = 128000, c.eos_token_ids = {128001, 128009};
    if (name == "llama-3.1-8b") {
      c.max_position_embeddings = 131072;
      c.rope_scaling = {RopeScaling::Kind::kLlama3, 8.0, 1.0, 4.0, 8192};
    }
  } else if (name == "llama-3.2-1b") {
    c.hidden_size = 2048, c.intermediate_size = 8192, c.num_layers = 16, c.num_heads = 32;
    c.num_kv_heads = 8, c.vocab_size = 128256, c.max_position_embeddings = 131072;
    c.rope_theta = 500000.0, c.tie_word_embeddings = true;
    c.rope_scaling = {RopeScaling::Kind::kLlama3, 32.0, 1.0, 4.0, 8192};
    c.bos_token_id = 128000, c.eos_token_ids = {128001, 128008, 128009};
  } else if (name == "tinyllama-1.1b") {
    c.hidden_size = 2048, c.intermediate_size = 5632, c.num_layers = 22, c.num_heads = 32;
    c.num_kv_heads = 4, c.vocab_size = 32000, c.max_position_embeddings = 2048;
  } else if (name == "stories260k") {
    c.hidden_size = 64, c.intermediate_size = 172, c.num_layers = 5, c.num_heads = 8;
    c.num_kv_heads = 4, c.vocab_size = 512, c.max_position_embeddings = 512;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown dummy model '", name, "' (known: ", absl::StrJoin(DummyModelNames(), ", "), ")"));
  }
  c.head_dim = c.hidden_size / c.num_heads;
  return c;
}

}  // namespace kvserve
