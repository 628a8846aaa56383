// GPT-2's reversible byte <-> printable-character map used by ByteLevel pre-tokenizers and decoders
// (internal to tokenizer/).
#pragma once

#include <string>
#include <string_view>

namespace kvserve::byte_level {

// Maps every byte to its printable stand-in (e.g. ' ' -> "Ġ", '\n' -> "Ċ"), as UTF-8.
std::string Encode(std::string_view bytes);

// Inverse of Encode for one token. Returns false, leaving *bytes unspecified, when a character has
// no byte behind it (a token that is not byte-level, such as an added token's plain text).
bool Decode(std::string_view token, std::string* bytes);

}  // namespace kvserve::byte_level
