// kvserve-compress-heads: converts a Hugging Face Llama folder to fewer KV heads, offline
// (prefill_and_heads.md §2). The result loads in the server and the CLI unchanged.
#include <absl/strings/str_format.h>

#include <iostream>

#include "cli/arg_parser.h"
#include "tokenizer/tokenizer.h"
#include "tools/kv_heads.h"
#include "tools/story_stream.h"

int main(int argc, char** argv) {
  using namespace kvserve;
  std::string model_dir, calibration, out_dir, method = "pca";
  int64_t kv_heads = 0, calibration_tokens = 32768, first_story = 0;
  ArgParser parser(
      "kvserve-compress-heads --model DIR --calibration TEXT_FILE --kv-heads N --out DIR");
  parser.AddString("model", &model_dir, "Hugging Face Llama folder (MHA or GQA)");
  parser.AddString("calibration", &calibration,
                   "calibration text (stories separated by <|endoftext|> lines, or plain text)");
  parser.AddInt("calibration-tokens", &calibration_tokens, "calibration tokens to use");
  parser.AddInt("calibration-first-story", &first_story,
                "skip this many stories first (keep calibration and evaluation text disjoint)");
  parser.AddInt("kv-heads", &kv_heads, "KV heads of the result; must divide the query heads");
  parser.AddString("method", &method, "pca (RoPE-safe PCA, the paper's) or mean (mean pooling)");
  parser.AddString("out", &out_dir, "folder to write");
  auto status = parser.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (status.ok() && !parser.help_requested() &&
      (model_dir.empty() || calibration.empty() || out_dir.empty() || kv_heads == 0)) {
    status =
        absl::InvalidArgumentError("--model, --calibration, --kv-heads and --out are required");
  }
  if (status.ok() && method != "pca" && method != "mean") {
    status = absl::InvalidArgumentError("--method must be pca or mean, got '" + method + "'");
  }
  if (const int code = parser.ExitCode(status, "kvserve-compress-heads"); code >= 0) return code;
  auto fail = [](const absl::Status& s) { return Fail("kvserve-compress-heads", s); };
  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) return fail(tokenizer.status());
  auto stream = StoryStream(**tokenizer, calibration, first_story, calibration_tokens);
  if (!stream.ok()) return fail(stream.status());
  const HeadMergeMethod merge =
      method == "pca" ? HeadMergeMethod::kPca : HeadMergeMethod::kMeanPool;
  auto energies = CompressKvHeads(model_dir, *stream, {kv_heads, merge}, out_dir);
  if (!energies.ok()) return fail(energies.status());
  std::cout << "wrote " << out_dir << " with " << kv_heads << " KV heads (" << method << ", "
            << stream->size() << " calibration tokens)\n";
  if (merge == HeadMergeMethod::kPca) {
    std::cout << "layer  key energy kept  value energy kept\n";
    for (size_t i = 0; i < energies->size(); ++i) {
      std::cout << absl::StrFormat("%5d  %15.4f  %17.4f\n", i, (*energies)[i].keys,
                                   (*energies)[i].values);
    }
  }
  return 0;
}
