// Finds added/special tokens (tokenizer.json "added_tokens", sentencepiece control symbols) in raw
// text so that they are encoded as single ids before normalization and BPE (internal to
// tokenizer/).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvserve {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // skipped by Decode
  bool lstrip = false;       // also swallows whitespace on its left
  bool rstrip = false;       // also swallows whitespace on its right
  bool single_word = false;  // only matches when not inside a word
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  struct Segment {
    std::string_view text;
    size_t offset = 0;      // of `text` in the input, so callers know which segment comes first
    int32_t token_id = -1;  // -1: plain text still to be tokenized
  };
  // Splits at the leftmost-longest token matches, as `tokenizers`' AddedVocabulary does. Plain
  // segments are never empty. Tokens are matched in the raw text, also those marked normalized;
  // for the tokenizers we load the normalizer leaves their spelling unchanged.
  std::vector<Segment> Split(std::string_view text) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // few per node; linear scan
    int32_t token = -1;                                       // index into tokens_
  };
  int32_t Child(int32_t node, unsigned char byte) const;
  // The longest acceptable token starting at pos: {token index, end} or {-1, pos}.
  std::pair<int32_t, size_t> LongestMatch(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_{Node{}};
};

}  // namespace kvserve
