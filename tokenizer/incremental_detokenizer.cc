#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace kvserve {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer)
    : tokenizer_(tokenizer) {}

// Decoding ids_[prefix_offset_:] and ids_[prefix_offset_:read_offset_] and emitting the difference
// gives the text the new ids add in context: leading-space stripping and byte-fallback fusing then
// happen the same way as in a full Decode. The window restarts after each emission, so each call
// decodes only a few ids.
std::string IncrementalDetokenizer::Push(int32_t id) {
  ids_.push_back(id);
  const std::span<const int32_t> ids(ids_);
  const std::string prefix_text =
      tokenizer_.Decode(ids.subspan(prefix_offset_, read_offset_ - prefix_offset_));
  const std::string new_text = tokenizer_.Decode(ids.subspan(prefix_offset_));
  // Hold back while the new ids end in an incomplete character (decoded as U+FFFD) or add nothing
  // yet (a skipped special token, a lone "▁" that may be a stripped leading space).
  if (new_text.size() <= prefix_text.size() || new_text.ends_with(unicode::kReplacementChar) ||
      !new_text.starts_with(prefix_text)) {
    return "";
  }
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  Compact();
  return new_text.substr(prefix_text.size());
}

std::string IncrementalDetokenizer::Flush() {
  const std::span<const int32_t> ids(ids_);
  const std::string prefix_text =
      tokenizer_.Decode(ids.subspan(prefix_offset_, read_offset_ - prefix_offset_));
  const std::string new_text = tokenizer_.Decode(ids.subspan(prefix_offset_));
  ids_.clear();
  prefix_offset_ = read_offset_ = 0;
  if (new_text.size() <= prefix_text.size() || !new_text.starts_with(prefix_text)) return "";
  return new_text.substr(prefix_text.size());
}

void IncrementalDetokenizer::Compact() {
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_offset_));
  read_offset_ -= prefix_offset_;
  prefix_offset_ = 0;
}

}  // namespace kvserve
