#include "tokenizer/token_decoder.h"

#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

namespace kvserve {
namespace {

// "<0xAB>" -> 0xAB; -1 for any other token.
int ParseByteToken(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  const char* digits = token.data() + 3;
  const auto [end, error] = std::from_chars(digits, digits + 2, value, 16);
  return error == std::errc() && end == digits + 2 ? value : -1;
}

// `tokenizers`' ByteFallback: a run of byte tokens becomes its text when the run is valid UTF-8,
// else one U+FFFD per byte (not per invalid subpart).
std::vector<std::string> DecodeByteFallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string bytes;
  size_t byte_count = 0;
  auto flush = [&] {
    if (byte_count == 0) return;
    if (unicode::IsValidUtf8(bytes)) {
      out.push_back(bytes);
    } else {
      for (size_t i = 0; i < byte_count; ++i) out.emplace_back(unicode::kReplacementChar);
    }
    bytes.clear();
    byte_count = 0;
  };
  for (std::string& token : tokens) {
    if (const int byte = ParseByteToken(token); byte >= 0) {
      bytes.push_back(static_cast<char>(byte));
      ++byte_count;
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  return out;
}

// `tokenizers`' Strip: removes up to `start` leading and `stop` trailing `c` characters.
std::string StripToken(const std::string& token, char32_t c, size_t start, size_t stop) {
  std::string strip;
  unicode::AppendUtf8(c, &strip);
  std::string_view view = token;
  for (size_t i = 0; i < start && view.substr(0, strip.size()) == strip; ++i) {
    view.remove_prefix(strip.size());
  }
  for (size_t i = 0;
       i < stop && view.size() >= strip.size() && view.substr(view.size() - strip.size()) == strip;
       ++i) {
    view.remove_suffix(strip.size());
  }
  return std::string(view);
}

// `tokenizers`' ByteLevel decoder: tokens back to bytes (a token that is not byte-level, such as
// an added token, keeps its own bytes), then lossy UTF-8.
std::string DecodeByteLevel(const std::vector<std::string>& tokens) {
  std::string bytes;
  for (const std::string& token : tokens) {
    std::string token_bytes;
    bytes += byte_level::Decode(token, &token_bytes) ? token_bytes : token;
  }
  return unicode::ToValidUtf8Lossy(bytes);
}

}  // namespace

absl::StatusOr<TokenDecoder> TokenDecoder::FromJson(const nlohmann::json& decoder,
                                                    const std::string& file) {
  TokenDecoder result;
  if (decoder.is_null()) {
    result.join_with_spaces_ = true;
    return result;
  }
  if (absl::Status status = result.AddSteps(decoder, file); !status.ok()) return status;
  return result;
}

absl::Status TokenDecoder::AddSteps(const nlohmann::json& decoder, const std::string& file) {
  const std::string type = decoder.at("type").get<std::string>();
  Step step;
  if (type == "Sequence") {
    for (const nlohmann::json& child : decoder.at("decoders")) {
      if (absl::Status status = AddSteps(child, file); !status.ok()) return status;
    }
    return absl::OkStatus();
  } else if (type == "Replace" && decoder.at("pattern").contains("String")) {
    step = {Kind::kReplace, decoder["pattern"]["String"].get<std::string>(),
            decoder.at("content").get<std::string>()};
  } else if (type == "ByteFallback") {
    step.kind = Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    const std::string content = decoder.value("content", " ");
    step.strip_char = content.empty() ? U' ' : unicode::DecodeChar(content, 0).code_point;
    step.strip_start = decoder.value("start", 0);
    step.strip_stop = decoder.value("stop", 0);
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    step.from = decoder.value("replacement", "\xE2\x96\x81");
    step.strip_first =
        decoder.value("prepend_scheme",
                      decoder.value("add_prefix_space", true) ? "always" : "never") != "never";
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
  } else {
    return absl::UnimplementedError(
        absl::StrCat(file, ": decoder ", decoder.dump(), " is not supported"));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

std::string TokenDecoder::Decode(std::vector<std::string> tokens) const {
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kReplace:
        for (std::string& token : tokens)
          token = absl::StrReplaceAll(token, {{step.from, step.to}});
        break;
      case Kind::kByteFallback:
        tokens = DecodeByteFallback(std::move(tokens));
        break;
      case Kind::kFuse:
        tokens = {absl::StrJoin(tokens, "")};
        break;
      case Kind::kStrip:
        for (std::string& token : tokens) {
          token = StripToken(token, step.strip_char, step.strip_start, step.strip_stop);
        }
        break;
      case Kind::kMetaspace:
        // As `tokenizers`: every "▁" of the first token is dropped, the others become spaces.
        for (size_t i = 0; i < tokens.size(); ++i) {
          tokens[i] =
              absl::StrReplaceAll(tokens[i], {{step.from, i == 0 && step.strip_first ? "" : " "}});
        }
        break;
      case Kind::kByteLevel:
        tokens = {DecodeByteLevel(tokens)};
        break;
    }
  }
  return absl::StrJoin(tokens, join_with_spaces_ ? " " : "");
}

}  // namespace kvserve
