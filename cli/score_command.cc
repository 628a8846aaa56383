// kvserve-cli score: teacher-forced mean negative log-likelihood and perplexity of a text file's
// tokens (BOS first) under a full cache.
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "model/scoring.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

int RunScoreCommand(const std::vector<std::string>& args) {
  std::string model_dir = DefaultModelDir(), text_file, dtype = "float32", device = "cpu";
  int64_t max_tokens = 0;
  bool json_output = false;
  ArgParser parser("kvserve-cli score --model DIR --text-file F [options]");
  parser.AddString("model", &model_dir, "Hugging Face model folder");
  parser.AddString("text-file", &text_file, "the text to score");
  parser.AddInt("max-tokens", &max_tokens,
                "score the first N tokens; 0: as many as the model's context holds");
  parser.AddString("dtype", &dtype, "float32, bfloat16 or float16");
  parser.AddString("device", &device, "cpu, cuda or cuda:N");
  parser.AddBool("json", &json_output, "print {tokens, mean_nll, perplexity} as JSON");
  auto status = parser.Parse(args);
  if (status.ok() && !parser.help_requested() && text_file.empty()) {
    status = absl::InvalidArgumentError("--text-file is required");
  }
  if (const int code = parser.ExitCode(status, "kvserve-cli score"); code >= 0) return code;
  auto fail = [](const absl::Status& s) { return Fail("kvserve-cli score", s); };
  std::ifstream in(text_file);
  if (!in) return fail(absl::NotFoundError("cannot open " + text_file));
  std::stringstream text;
  text << in.rdbuf();

  auto local = LoadLocalModel(model_dir, dtype, device);
  if (!local.ok()) return fail(local.status());
  auto& [tokenizer, model] = *local;

  std::vector<int32_t> ids = tokenizer->Encode(text.str(), /*add_bos=*/true);
  const int64_t limit = max_tokens > 0 ? max_tokens : model->config().max_position_embeddings;
  if (static_cast<int64_t>(ids.size()) > limit) {
    std::cerr << "kvserve-cli score: scoring the first " << limit << " of " << ids.size()
              << " tokens\n";
    ids.resize(limit);
  }
  auto nll = TokenNll(*model, ids);
  if (!nll.ok()) return fail(nll.status());
  double sum = 0;
  for (double v : *nll) sum += v;
  const double mean = sum / nll->size();
  if (json_output) {
    std::cout << nlohmann::json{{"tokens", ids.size()},
                                {"scored_tokens", nll->size()},
                                {"mean_nll", mean},
                                {"perplexity", std::exp(mean)}}
                     .dump()
              << "\n";
  } else {
    std::cout << "tokens " << ids.size() << "  mean NLL " << mean << "  perplexity "
              << std::exp(mean) << "\n";
  }
  return 0;
}

absl::StatusOr<LocalModel> LoadLocalModel(const std::string& model_dir, const std::string& dtype,
                                          const std::string& device) {
  auto parsed_dtype = ParseDtype(dtype);
  if (!parsed_dtype.ok()) return parsed_dtype.status();
  auto parsed_device = ParseDevice(device);
  if (!parsed_device.ok()) return parsed_device.status();
  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  auto model = LlamaModel::Load(model_dir, {*parsed_dtype, *parsed_device, 0});
  if (!model.ok()) return model.status();
  return LocalModel{std::move(*tokenizer), std::move(*model)};
}

}  // namespace kvserve
