// The "normalizer" of a tokenizer.json (internal to tokenizer/). Supported: Sequence, Prepend,
// Replace with a string pattern, and NFC, which is applied as the identity (input is assumed to be
// NFC already, as nearly all text is; decomposed input may then tokenize differently from HF).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kvserve {

class Normalizer {
 public:
  // `normalizer` may be null (no normalization). `file` only names the source in errors.
  static absl::StatusOr<Normalizer> FromJson(const nlohmann::json& normalizer,
                                             const std::string& file);

  // Applied to each plain-text segment between added tokens, as `tokenizers` does; that is why a
  // Prepend("▁") gives every segment its own leading "▁" (Llama's "legacy" behaviour).
  std::string Normalize(std::string_view text) const;

 private:
  struct Step {
    bool prepend;  // else a replace of `from` by `to`
    std::string from;
    std::string to;
  };
  absl::Status AddSteps(const nlohmann::json& normalizer, const std::string& file);

  std::vector<Step> steps_;
};

}  // namespace kvserve
