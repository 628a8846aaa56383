#include "tokenizer/byte_level.h"

#include <array>
#include <cstdint>
#include <unordered_map>

#include "tokenizer/unicode.h"

namespace kvserve::byte_level {
namespace {

// bytes_to_unicode() from GPT-2's encoder.py: printable Latin-1 bytes map to themselves, the other
// 68 bytes to U+0100 onwards in byte order, so that no token contains whitespace or controls.
struct Tables {
  std::array<std::string, 256> to_char;
  std::unordered_map<char32_t, uint8_t> to_byte;

  Tables() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t c = printable ? static_cast<char32_t>(b) : next++;
      unicode::AppendUtf8(c, &to_char[b]);
      to_byte[c] = static_cast<uint8_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

std::string Encode(std::string_view bytes) {
  const Tables& tables = GetTables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) out += tables.to_char[static_cast<uint8_t>(b)];
  return out;
}

bool Decode(std::string_view token, std::string* bytes) {
  const Tables& tables = GetTables();
  for (size_t pos = 0; pos < token.size();) {
    const unicode::DecodedChar c = unicode::DecodeChar(token, pos);
    const auto it = tables.to_byte.find(c.code_point);
    if (it == tables.to_byte.end()) return false;
    bytes->push_back(static_cast<char>(it->second));
    pos += c.length;
  }
  return true;
}

}  // namespace kvserve::byte_level
