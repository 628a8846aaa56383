#include "tokenizer/sentencepiece_tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvserve {

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::LoadFile(
    const std::string& path) {
  std::string error;
  std::unique_ptr<SentencePieceModel> model = SentencePieceModel::Load(path, &error);
  if (model == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot load sentencepiece model: ", error));
  }
  return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(model)));
}

SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> model)
    : model_(std::move(model)) {
  // sentencepiece itself treats "<s>" in the text as three characters; transformers' tokenizers
  // (slow and fast) match special-token text first, so we do too, for the same ids either way.
  std::vector<AddedToken> controls;
  for (int id = 0; id < model_->size(); ++id) {
    if (model_->IsControl(id) || model_->IsUnknown(id)) {
      controls.push_back({model_->IdToPiece(id), id, /*special=*/true});
    }
  }
  control_tokens_ = AddedTokenMatcher(controls);
  defaults_.bos_id = model_->bos_id();
  if (model_->eos_id() >= 0) defaults_.eos_ids = {model_->eos_id()};
  defaults_.add_bos_token = true;
}

std::vector<int32_t> SentencePieceTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids = StartIds(add_bos);
  for (const AddedTokenMatcher::Segment& segment : control_tokens_.Split(text)) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    for (int id : model_->Encode(segment.text)) ids.push_back(id);
  }
  return ids;
}

std::string SentencePieceTokenizer::Decode(std::span<const int32_t> ids) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= model_->size()) continue;
    if (model_->IsControl(id) || model_->IsUnknown(id)) continue;
    kept.push_back(id);
  }
  return model_->Decode(kept);
}

int32_t SentencePieceTokenizer::vocab_size() const { return model_->size(); }

std::optional<int32_t> SentencePieceTokenizer::TokenToId(std::string_view token) const {
  const int id = model_->PieceToId(token);
  // PieceToId answers unk_id for unknown pieces; only the unknown piece itself maps to it.
  if (id == model_->unk_id() && model_->IdToPiece(id) != token) return std::nullopt;
  return id;
}

}  // namespace kvserve
