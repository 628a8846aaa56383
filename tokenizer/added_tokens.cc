#include "tokenizer/added_tokens.h"

#include "tokenizer/unicode.h"

namespace kvserve {
namespace {

bool IsAsciiSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Whether the character ending at `end` (or starting at `begin`) is part of a word, for
// single_word tokens. ASCII '_' counts, as in `tokenizers`' \w-style check.
bool IsWordChar(char32_t c) { return c == '_' || unicode::IsLetter(c) || unicode::IsNumber(c); }

bool WordBefore(std::string_view text, size_t pos) {
  if (pos == 0) return false;
  size_t start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return IsWordChar(unicode::DecodeChar(text, start).code_point);
}

bool WordAfter(std::string_view text, size_t pos) {
  return pos < text.size() && IsWordChar(unicode::DecodeChar(text, pos).code_point);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  for (size_t t = 0; t < tokens_.size(); ++t) {
    if (tokens_[t].content.empty()) continue;
    int32_t node = 0;
    for (char c : tokens_[t].content) {
      const auto byte = static_cast<unsigned char>(c);
      int32_t child = Child(node, byte);
      if (child < 0) {
        child = static_cast<int32_t>(trie_.size());
        trie_[node].children.emplace_back(byte, child);
        trie_.emplace_back();
      }
      node = child;
    }
    trie_[node].token = static_cast<int32_t>(t);
  }
}

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char byte) const {
  for (const auto& [b, child] : trie_[node].children) {
    if (b == byte) return child;
  }
  return -1;
}

std::pair<int32_t, size_t> AddedTokenMatcher::LongestMatch(std::string_view text,
                                                           size_t pos) const {
  std::pair<int32_t, size_t> best{-1, pos};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = Child(node, static_cast<unsigned char>(text[i]));
    if (node < 0) break;
    const int32_t t = trie_[node].token;
    if (t < 0) continue;
    if (tokens_[t].single_word && (WordBefore(text, pos) || WordAfter(text, i + 1))) continue;
    best = {t, i + 1};
  }
  return best;
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Segment> segments;
  size_t plain_start = 0;
  auto add_plain = [&](size_t end) {
    if (end > plain_start)
      segments.push_back({text.substr(plain_start, end - plain_start), plain_start});
  };
  for (size_t pos = 0; pos < text.size();) {
    const auto [t, end] =
        tokens_.empty() ? std::pair<int32_t, size_t>{-1, pos} : LongestMatch(text, pos);
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[t];
    size_t start = pos;
    if (token.lstrip) {
      while (start > plain_start && IsAsciiSpace(text[start - 1])) --start;
    }
    size_t stop = end;
    if (token.rstrip) {
      while (stop < text.size() && IsAsciiSpace(text[stop])) ++stop;
    }
    add_plain(start);
    segments.push_back({text.substr(start, stop - start), start, token.id});
    pos = plain_start = stop;
  }
  add_plain(text.size());
  return segments;
}

}  // namespace kvserve
