#include "tokenizer/special_tokens.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

// A missing file reads as an empty object.
absl::StatusOr<nlohmann::json> ReadOptionalJsonFile(const std::string& path) {
  if (!std::filesystem::exists(path)) return nlohmann::json::object();
  return ReadJsonFile(path);
}

// bos_token / eos_token in tokenizer_config.json: a string, or an AddedToken object with "content".
std::optional<int32_t> ResolveTokenField(const nlohmann::json& config, const char* key,
                                         const Tokenizer& tokenizer) {
  if (!config.contains(key)) return std::nullopt;
  const nlohmann::json& value = config[key];
  if (value.is_string()) return tokenizer.TokenToId(value.get<std::string>());
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return tokenizer.TokenToId(value["content"].get<std::string>());
  }
  return std::nullopt;
}

// bos_token_id / eos_token_id: an int, a list of ints, or null.
std::vector<int32_t> IdsField(const nlohmann::json& config, const char* key) {
  std::vector<int32_t> ids;
  if (!config.contains(key)) return ids;
  const nlohmann::json& value = config[key];
  if (value.is_number_integer()) ids.push_back(value.get<int32_t>());
  if (value.is_array()) {
    for (const nlohmann::json& id : value) {
      if (id.is_number_integer()) ids.push_back(id.get<int32_t>());
    }
  }
  return ids;
}

}  // namespace

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed JSON: ", e.what()));
  }
}

absl::StatusOr<SpecialTokens> ReadSpecialTokens(const std::string& model_dir,
                                                const Tokenizer& tokenizer,
                                                const SpecialTokens& defaults) {
  absl::StatusOr<nlohmann::json> tokenizer_config =
      ReadOptionalJsonFile(model_dir + "/tokenizer_config.json");
  if (!tokenizer_config.ok()) return tokenizer_config.status();
  absl::StatusOr<nlohmann::json> config = ReadOptionalJsonFile(model_dir + "/config.json");
  if (!config.ok()) return config.status();
  absl::StatusOr<nlohmann::json> generation_config =
      ReadOptionalJsonFile(model_dir + "/generation_config.json");
  if (!generation_config.ok()) return generation_config.status();

  SpecialTokens tokens = defaults;
  if (auto id = ResolveTokenField(*tokenizer_config, "bos_token", tokenizer)) {
    tokens.bos_id = *id;
  } else if (auto ids = IdsField(*generation_config, "bos_token_id"); !ids.empty()) {
    tokens.bos_id = ids[0];
  } else if (auto ids = IdsField(*config, "bos_token_id"); !ids.empty()) {
    tokens.bos_id = ids[0];
  }
  if (auto ids = IdsField(*generation_config, "eos_token_id"); !ids.empty()) {
    tokens.eos_ids = ids;
  } else if (auto ids = IdsField(*config, "eos_token_id"); !ids.empty()) {
    tokens.eos_ids = ids;
  } else if (auto id = ResolveTokenField(*tokenizer_config, "eos_token", tokenizer)) {
    tokens.eos_ids = {*id};
  }
  if (tokenizer_config->contains("add_bos_token") &&
      (*tokenizer_config)["add_bos_token"].is_boolean()) {
    tokens.add_bos_token = (*tokenizer_config)["add_bos_token"].get<bool>();
  }
  return tokens;
}

}  // namespace kvserve
