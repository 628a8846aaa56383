// libsentencepiece behind plain std types (internal to tokenizer/). sentencepiece_processor.h
// declares `absl::string_view` as std::string_view, which clashes with Debian's Abseil (where it is
// Abseil's own class), so that header must stay alone in sentencepiece_model.cc, away from every
// Abseil header.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace kvserve {

class SentencePieceModel {
 public:
  // nullptr with *error set when PATH cannot be loaded.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);
  ~SentencePieceModel();

  std::vector<int> Encode(std::string_view text) const;
  std::string Decode(const std::vector<int>& ids) const;
  int size() const;
  int PieceToId(std::string_view piece) const;  // unk_id() when unknown
  const std::string& IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;

 private:
  explicit SentencePieceModel(std::unique_ptr<sentencepiece::SentencePieceProcessor> processor);

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace kvserve
