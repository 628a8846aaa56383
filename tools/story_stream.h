// Held-out evaluation text as one token stream: TinyStories-style files whose stories are separated
// by lines holding only `<|endoftext|>`; each story is stripped and starts with BOS, as in
// training.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvserve {

// Tokens of stories first_story, first_story + 1, ... until max_tokens are gathered (the last
// story is cut) or the file ends. NOT_FOUND if the file cannot be read.
absl::StatusOr<std::vector<int32_t>> StoryStream(const Tokenizer& tokenizer,
                                                 const std::string& path, int64_t first_story,
                                                 int64_t max_tokens);

}  // namespace kvserve
