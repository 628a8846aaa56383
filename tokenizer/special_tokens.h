// BOS/EOS ids and add_bos_token from a model folder's JSON configs (internal to tokenizer/).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kvserve {

class Tokenizer;

struct SpecialTokens {
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  bool add_bos_token = false;
};

// Reads PATH as JSON; NotFound or InvalidArgument errors name the file.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

// Precedence, each falling back to the next:
//   bos: tokenizer_config.json bos_token (resolved through `tokenizer`), generation_config.json
//        bos_token_id, config.json bos_token_id, `defaults` (what the tokenizer file itself says).
//   eos: generation_config.json eos_token_id (int or list: what generation stops on),
//        config.json eos_token_id, tokenizer_config.json eos_token, `defaults`.
//   add_bos_token: tokenizer_config.json add_bos_token, else `defaults`.
// Missing files are fine; malformed ones are an error naming the file.
absl::StatusOr<SpecialTokens> ReadSpecialTokens(const std::string& model_dir,
                                                const Tokenizer& tokenizer,
                                                const SpecialTokens& defaults);

}  // namespace kvserve
