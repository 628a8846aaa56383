#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/json_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/special_tokens.h"

namespace kvserve {
namespace {

// Loads one backend and returns it with the special tokens its own file declares.
template <typename Backend>
absl::StatusOr<std::pair<std::unique_ptr<Tokenizer>, SpecialTokens>> LoadBackend(
    const std::string& path) {
  if (!std::filesystem::exists(path)) return absl::NotFoundError(absl::StrCat(path, " not found"));
  absl::StatusOr<std::unique_ptr<Backend>> backend = Backend::LoadFile(path);
  if (!backend.ok()) return backend.status();
  SpecialTokens defaults = (*backend)->defaults();
  return std::make_pair(std::unique_ptr<Tokenizer>(*std::move(backend)), std::move(defaults));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir) {
  const bool has_json = std::filesystem::exists(model_dir + "/tokenizer.json");
  if (!has_json && !std::filesystem::exists(model_dir + "/tokenizer.model")) {
    if (!std::filesystem::is_directory(model_dir)) {
      return absl::NotFoundError(absl::StrCat("model directory ", model_dir, " does not exist"));
    }
    return absl::NotFoundError(absl::StrCat("neither ", model_dir, "/tokenizer.json nor ",
                                            model_dir, "/tokenizer.model exists"));
  }
  return Load(model_dir, has_json ? "json" : "sentencepiece");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir,
                                                           std::string_view backend) {
  if (!std::filesystem::is_directory(model_dir)) {
    return absl::NotFoundError(absl::StrCat("model directory ", model_dir, " does not exist"));
  }
  absl::StatusOr<std::pair<std::unique_ptr<Tokenizer>, SpecialTokens>> loaded;
  if (backend == "json") {
    loaded = LoadBackend<JsonBpeTokenizer>(model_dir + "/tokenizer.json");
  } else if (backend == "sentencepiece") {
    loaded = LoadBackend<SentencePieceTokenizer>(model_dir + "/tokenizer.model");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer backend must be \"json\" or \"sentencepiece\", got \"",
                     std::string(backend), "\""));
  }
  if (!loaded.ok()) return loaded.status();
  auto& [tokenizer, defaults] = *loaded;
  absl::StatusOr<SpecialTokens> special = ReadSpecialTokens(model_dir, *tokenizer, defaults);
  if (!special.ok()) return special.status();
  tokenizer->bos_id_ = special->bos_id;
  tokenizer->eos_ids_ = special->eos_ids;
  tokenizer->add_bos_token_ = special->add_bos_token;
  return std::move(tokenizer);
}

}  // namespace kvserve
