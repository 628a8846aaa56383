// UTF-8 and Unicode-category helpers for the tokenizer (internal to tokenizer/).
//
// Letter/number classes are approximated by code-point ranges (see unicode.cc for what is covered);
// they exist only to drive the GPT-2 / Llama-3 pre-tokenizer splits, where a wrong class for a rare
// script changes where a word is split, not which bytes are encoded.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kvserve::unicode {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

struct DecodedChar {
  char32_t code_point;  // U+FFFD when the bytes at the position are not valid UTF-8
  size_t length;        // bytes consumed, >= 1 unless at the end of the input
};

// Decodes the character starting at text[pos] (pos < text.size()). Invalid input decodes as U+FFFD
// with the length of its maximal invalid subpart, as Rust's from_utf8_lossy and ICU do.
DecodedChar DecodeChar(std::string_view text, size_t pos);

void AppendUtf8(char32_t code_point, std::string* out);

bool IsValidUtf8(std::string_view bytes);

// Replaces each maximal invalid subpart with U+FFFD (Rust's String::from_utf8_lossy).
std::string ToValidUtf8Lossy(std::string_view bytes);

// \p{L}, \p{N} and \s as the Rust regex crate defines them, approximated by ranges (see .cc).
bool IsLetter(char32_t c);
bool IsNumber(char32_t c);
bool IsWhitespace(char32_t c);

}  // namespace kvserve::unicode
