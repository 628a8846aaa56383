// Tokenizer backend for Hugging Face tokenizer.json files with a BPE model (internal to
// tokenizer/; use Tokenizer::Load). Encode: split out added tokens, normalize each other segment,
// pre-tokenize, BPE each word. Decode: drop special tokens, run the decoder chain.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/token_decoder.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

class JsonBpeTokenizer final : public Tokenizer {
 public:
  // Loads PATH (a tokenizer.json). Errors name the file and the unsupported or malformed part.
  static absl::StatusOr<std::unique_ptr<JsonBpeTokenizer>> LoadFile(const std::string& path);

  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const override;
  std::string Decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> TokenToId(std::string_view token) const override;

  // What the file itself says: the BOS its post_processor template adds, if any.
  const SpecialTokens& defaults() const { return defaults_; }

 private:
  JsonBpeTokenizer(BpeModel model, Normalizer normalizer, PreTokenizer pre_tokenizer,
                   TokenDecoder decoder)
      : model_(std::move(model)),
        normalizer_(std::move(normalizer)),
        pre_tokenizer_(std::move(pre_tokenizer)),
        decoder_(std::move(decoder)) {}
  absl::Status LoadAddedTokens(const nlohmann::json& added_tokens, const std::string& file);
  void LoadTemplateBos(const nlohmann::json& post_processor);

  BpeModel model_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  TokenDecoder decoder_;
  AddedTokenMatcher added_tokens_;
  std::unordered_map<int32_t, AddedToken> added_by_id_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  int32_t vocab_size_ = 0;
  SpecialTokens defaults_;
};

}  // namespace kvserve
