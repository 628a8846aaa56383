// kvserve-cli's subcommands. Each takes its own arguments (after the subcommand name) and returns
// the process exit code: 0 on success, 1 on a runtime error, 2 on a usage error.
#pragma once

#include <absl/status/statusor.h>

#include <memory>
#include <string>
#include <vector>

#include "model/llama_model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

// generate: one request through the engine, streaming text (or --json at the end).
int RunGenerateCommand(const std::vector<std::string>& args);
// stream: a gRPC client of a running kvserve server, printing tokens as they arrive.
int RunStreamCommand(const std::vector<std::string>& args);
// health: the grpc.health.v1 check of a running server; exit 0 when SERVING.
int RunHealthCommand(const std::vector<std::string>& args);
// score: teacher-forced mean NLL and perplexity of a text file.
int RunScoreCommand(const std::vector<std::string>& args);

// eval: quality of cache policies against the full cache on held-out text.
int RunEvalCommand(const std::vector<std::string>& args);

// A model and its tokenizer loaded in this process, for the offline commands.
struct LocalModel {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LlamaModel> model;
};
// Loads DIR's tokenizer and model in `dtype` ("float32", ...) on `device` ("cpu", "cuda", ...).
absl::StatusOr<LocalModel> LoadLocalModel(const std::string& model_dir, const std::string& dtype,
                                          const std::string& device);

// The model folder used when --model is not given: $KVSERVE_SHARED/models/stories260K, else
// ../shared/models/stories260K.
std::string DefaultModelDir();

}  // namespace kvserve
