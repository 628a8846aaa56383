// kvserve-cli: offline generation and scoring on a local model, and a streaming client of a
// running server.
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace {

constexpr char kUsage[] = R"(usage: kvserve-cli COMMAND [options]   (COMMAND --help for its options)

commands:
  generate   generate text from a prompt on a local model (streams it, or --json)
  score      teacher-forced mean NLL and perplexity of a text file
  eval       quality of cache policies against the full cache (or of CritiPrefill against
             dense prefill) on held-out text
  stream     stream a generation from a running kvserve server (gRPC)
  health     grpc.health.v1 check of a running server (exit 0 when SERVING)
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "generate") return kvserve::RunGenerateCommand(args);
  if (command == "score") return kvserve::RunScoreCommand(args);
  if (command == "eval") return kvserve::RunEvalCommand(args);
  if (command == "stream") return kvserve::RunStreamCommand(args);
  if (command == "health") return kvserve::RunHealthCommand(args);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  std::cerr << "kvserve-cli: unknown command '" << command << "'\n\n" << kUsage;
  return 2;
}
