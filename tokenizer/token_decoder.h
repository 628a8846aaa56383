// The "decoder" of a tokenizer.json (internal to tokenizer/): turns token strings back into text.
// Supported: Sequence, Replace (string pattern), ByteFallback, Fuse, Strip, Metaspace, ByteLevel.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kvserve {

class TokenDecoder {
 public:
  // `decoder` may be null: tokens are then joined with spaces, as `tokenizers` does.
  static absl::StatusOr<TokenDecoder> FromJson(const nlohmann::json& decoder,
                                               const std::string& file);

  std::string Decode(std::vector<std::string> tokens) const;

 private:
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kMetaspace, kByteLevel };
  struct Step {
    Kind kind;
    std::string from;  // Replace, Metaspace (the replacement character)
    std::string to;    // Replace
    char32_t strip_char = U' ';
    size_t strip_start = 0;
    size_t strip_stop = 0;
    bool strip_first = true;  // Metaspace: drop the first token's "▁" (prepend_scheme != never)
  };
  absl::Status AddSteps(const nlohmann::json& decoder, const std::string& file);

  std::vector<Step> steps_;
  bool join_with_spaces_ = false;
};

}  // namespace kvserve
