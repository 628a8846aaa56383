// The BPE model of a Hugging Face tokenizer.json (internal to tokenizer/): vocabulary, ranked
// merges, byte fallback and unknown-token handling, with the merge order of `tokenizers`' Word.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kvserve {

class BpeModel {
 public:
  // Builds from tokenizer.json's "model" object (type BPE). `file` only names the source in errors.
  static absl::StatusOr<BpeModel> FromJson(const nlohmann::json& model, const std::string& file);

  // Appends the ids of one pre-tokenized word. Characters outside the vocabulary become their
  // <0xXX> byte tokens (byte_fallback) or the unknown token (consecutive ones fused if fuse_unk),
  // or are dropped when the model has neither, as `tokenizers` does.
  void Encode(std::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Empty when the id is not in the vocabulary.
  const std::string& IdToToken(int32_t id) const;
  // One past the largest id.
  int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  // The symbols of `word` before any merge: one per character (or byte-fallback byte).
  std::vector<int32_t> InitialSymbols(std::string_view word) const;
  void ApplyMerges(std::vector<int32_t>* symbols) const;

  // Transparent so that lookups by string_view do not allocate.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_;  // the <0xXX> token of each byte, -1 if absent
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
};

}  // namespace kvserve
