#include "tools/story_stream.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/strip.h>

#include <fstream>

namespace kvserve {

absl::StatusOr<std::vector<int32_t>> StoryStream(const Tokenizer& tokenizer,
                                                 const std::string& path, int64_t first_story,
                                                 int64_t max_tokens) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<int32_t> stream;
  std::string story, line;
  int64_t index = 0;
  auto flush = [&] {
    const std::string text(absl::StripAsciiWhitespace(story));
    story.clear();
    if (text.empty()) return;
    if (index++ < first_story) return;
    const auto ids = tokenizer.Encode(text, /*add_bos=*/true);
    stream.insert(stream.end(), ids.begin(), ids.end());
  };
  while (static_cast<int64_t>(stream.size()) < max_tokens && std::getline(in, line)) {
    if (line == "<|endoftext|>") {
      flush();
    } else {
      story += line + "\n";
    }
  }
  if (static_cast<int64_t>(stream.size()) < max_tokens) flush();
  if (static_cast<int64_t>(stream.size()) > max_tokens) stream.resize(max_tokens);
  return stream;
}

}  // namespace kvserve
