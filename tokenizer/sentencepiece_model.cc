#include "tokenizer/sentencepiece_model.h"

#include <sentencepiece_processor.h>

namespace kvserve {

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  if (const auto status = processor->Load(path); !status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceModel>(new SentencePieceModel(std::move(processor)));
}

SentencePieceModel::SentencePieceModel(
    std::unique_ptr<sentencepiece::SentencePieceProcessor> processor)
    : processor_(std::move(processor)) {}

SentencePieceModel::~SentencePieceModel() = default;

std::vector<int> SentencePieceModel::Encode(std::string_view text) const {
  return processor_->EncodeAsIds(text);
}
std::string SentencePieceModel::Decode(const std::vector<int>& ids) const {
  return processor_->DecodeIds(ids);
}
int SentencePieceModel::size() const { return processor_->GetPieceSize(); }
int SentencePieceModel::PieceToId(std::string_view piece) const {
  return processor_->PieceToId(piece);
}
const std::string& SentencePieceModel::IdToPiece(int id) const { return processor_->IdToPiece(id); }
bool SentencePieceModel::IsControl(int id) const { return processor_->IsControl(id); }
bool SentencePieceModel::IsUnknown(int id) const { return processor_->IsUnknown(id); }
int SentencePieceModel::bos_id() const { return processor_->bos_id(); }
int SentencePieceModel::eos_id() const { return processor_->eos_id(); }
int SentencePieceModel::unk_id() const { return processor_->unk_id(); }

}  // namespace kvserve
