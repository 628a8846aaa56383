#include "tokenizer/json_tokenizer.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvserve {

absl::StatusOr<std::unique_ptr<JsonBpeTokenizer>> JsonBpeTokenizer::LoadFile(
    const std::string& path) {
  absl::StatusOr<nlohmann::json> file = ReadJsonFile(path);
  if (!file.ok()) return file.status();
  // nlohmann throws on a missing key or a wrong type; report those as a malformed file.
  try {
    const nlohmann::json& model_json = file->at("model");
    const std::string type = model_json.value("type", "BPE");
    if (type != "BPE") {
      return absl::UnimplementedError(
          absl::StrCat(path, ": model.type \"", type, "\" is not supported (only BPE)"));
    }
    absl::StatusOr<BpeModel> model = BpeModel::FromJson(model_json, path);
    if (!model.ok()) return model.status();
    absl::StatusOr<Normalizer> normalizer =
        Normalizer::FromJson(file->value("normalizer", nlohmann::json()), path);
    if (!normalizer.ok()) return normalizer.status();
    absl::StatusOr<PreTokenizer> pre_tokenizer =
        PreTokenizer::FromJson(file->value("pre_tokenizer", nlohmann::json()), path);
    if (!pre_tokenizer.ok()) return pre_tokenizer.status();
    absl::StatusOr<TokenDecoder> decoder =
        TokenDecoder::FromJson(file->value("decoder", nlohmann::json()), path);
    if (!decoder.ok()) return decoder.status();

    std::unique_ptr<JsonBpeTokenizer> tokenizer(new JsonBpeTokenizer(
        *std::move(model), *std::move(normalizer), *std::move(pre_tokenizer), *std::move(decoder)));
    tokenizer->vocab_size_ = tokenizer->model_.size();
    absl::Status status =
        tokenizer->LoadAddedTokens(file->value("added_tokens", nlohmann::json::array()), path);
    if (!status.ok()) return status;
    tokenizer->LoadTemplateBos(file->value("post_processor", nlohmann::json()));
    return tokenizer;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unexpected structure: ", e.what()));
  }
}

absl::Status JsonBpeTokenizer::LoadAddedTokens(const nlohmann::json& added_tokens,
                                               const std::string& file) {
  std::vector<AddedToken> tokens;
  for (const nlohmann::json& entry : added_tokens) {
    AddedToken token;
    token.content = entry.at("content").get<std::string>();
    token.id = entry.at("id").get<int32_t>();
    if (token.id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": added token ", token.content, " has negative id ", token.id));
    }
    token.special = entry.value("special", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.single_word = entry.value("single_word", false);
    vocab_size_ = std::max(vocab_size_, token.id + 1);
    added_by_id_[token.id] = token;
    added_by_content_[token.content] = token.id;
    tokens.push_back(std::move(token));
  }
  added_tokens_ = AddedTokenMatcher(tokens);
  return absl::OkStatus();
}

// A TemplateProcessing post-processor (alone or in a Sequence, as in Llama-3) whose "single"
// template starts with a special token is the file's way of saying "add BOS".
void JsonBpeTokenizer::LoadTemplateBos(const nlohmann::json& post_processor) {
  if (post_processor.is_null()) return;
  const std::string type = post_processor.value("type", "");
  if (type == "Sequence") {
    for (const nlohmann::json& step : post_processor.value("processors", nlohmann::json::array())) {
      LoadTemplateBos(step);
    }
    return;
  }
  if (type != "TemplateProcessing") return;
  const nlohmann::json single = post_processor.value("single", nlohmann::json::array());
  if (single.empty() || !single[0].contains("SpecialToken")) return;
  const std::string bos = single[0]["SpecialToken"].value("id", "");
  if (const auto id = TokenToId(bos)) {
    defaults_.bos_id = *id;
    defaults_.add_bos_token = true;
  }
}

std::optional<int32_t> JsonBpeTokenizer::TokenToId(std::string_view token) const {
  if (const auto it = added_by_content_.find(std::string(token)); it != added_by_content_.end()) {
    return it->second;
  }
  return model_.TokenToId(token);
}

std::vector<int32_t> JsonBpeTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids = StartIds(add_bos);
  for (const AddedTokenMatcher::Segment& segment : added_tokens_.Split(text)) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    const std::string normalized = normalizer_.Normalize(segment.text);
    for (const std::string& word : pre_tokenizer_.Split(normalized, segment.offset == 0)) {
      model_.Encode(word, &ids);
    }
  }
  return ids;
}

std::string JsonBpeTokenizer::Decode(std::span<const int32_t> ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) {
      if (!it->second.special) tokens.push_back(it->second.content);
      continue;
    }
    const std::string& token = model_.IdToToken(id);
    if (!token.empty()) tokens.push_back(token);
  }
  return decoder_.Decode(std::move(tokens));
}

}  // namespace kvserve
