// Tokenizer backend for sentencepiece tokenizer.model files, through libsentencepiece (internal to
// tokenizer/; use Tokenizer::Load). Mirrors transformers' slow LlamaTokenizer: control-symbol
// text such as "<s>" in the input becomes that symbol, each segment between them is encoded by
// sentencepiece, and Decode drops control and unknown ids (skip_special_tokens=True).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads PATH (a tokenizer.model). Errors name the file.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> LoadFile(const std::string& path);

  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const override;
  std::string Decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;

  // The model's own bos/eos ids; add_bos_token defaults to true, as for LlamaTokenizer.
  const SpecialTokens& defaults() const { return defaults_; }

 private:
  explicit SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> model);

  std::unique_ptr<SentencePieceModel> model_;
  AddedTokenMatcher control_tokens_;
  SpecialTokens defaults_;
};

}  // namespace kvserve
