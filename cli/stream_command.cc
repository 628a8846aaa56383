// kvserve-cli stream: a gRPC client of a running kvserve. Prints text as it arrives (or one JSON
// object per message with --json), then the usage on stderr.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <iostream>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "cli/server_connection.h"
#include "kvserve/v1/generation.grpc.pb.h"

namespace kvserve {
namespace {

struct StreamOptions {
  ServerConnection connection;
  std::string prompt;
  std::string request_id;
  std::string policy = "FULL";
  std::string stop;
  int64_t budget = 0;
  int64_t max_new_tokens = 64;
  double temperature = 0;
  int64_t top_k = 0;
  double top_p = 1;
  int64_t seed = -1;
  double timeout_s = 120;
  bool ignore_eos = false;
  bool json = false;
};

// INVALID_ARGUMENT for a policy name the API does not know (case-insensitive, '-' for '_').
absl::Status BuildRequest(const StreamOptions& o, v1::GenerateRequest& request) {
  request.set_prompt(o.prompt);
  request.set_request_id(o.request_id);
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_max_new_tokens(static_cast<int32_t>(o.max_new_tokens));
  s->set_temperature(static_cast<float>(o.temperature));
  s->set_top_k(static_cast<int32_t>(o.top_k));
  s->set_top_p(static_cast<float>(o.top_p));
  if (o.seed >= 0) s->set_seed(static_cast<uint64_t>(o.seed));
  if (!o.stop.empty()) s->add_stop(o.stop);
  s->set_ignore_eos(o.ignore_eos);
  std::string name = o.policy;
  for (char& c : name) c = c == '-' ? '_' : static_cast<char>(std::toupper(c));
  v1::CacheConfig::CachePolicy policy;
  if (!v1::CacheConfig::CachePolicy_Parse(name, &policy)) {
    return absl::InvalidArgumentError("--policy: unknown cache policy " + o.policy);
  }
  request.mutable_cache()->set_policy(policy);
  request.mutable_cache()->set_budget_tokens(o.budget);
  return absl::OkStatus();
}

}  // namespace

int RunStreamCommand(const std::vector<std::string>& args) {
  StreamOptions o;
  ArgParser parser("kvserve-cli stream --server HOST:PORT --prompt TEXT [options]");
  o.connection.AddOptions(parser);
  parser.AddString("prompt", &o.prompt, "prompt text");
  parser.AddString("request-id", &o.request_id, "request id (the server makes one up if empty)");
  parser.AddInt("max-new-tokens", &o.max_new_tokens, "tokens to generate");
  parser.AddDouble("temperature", &o.temperature, "0: greedy");
  parser.AddInt("top-k", &o.top_k, "0: off");
  parser.AddDouble("top-p", &o.top_p, "1: off");
  parser.AddInt("seed", &o.seed, "random seed; -1: the server picks one");
  parser.AddString("stop", &o.stop, "a stop string");
  parser.AddBool("ignore-eos", &o.ignore_eos, "go on past end-of-sequence tokens");
  parser.AddString("policy", &o.policy, "cache policy: FULL, STREAMING_LLM, H2O, SNAPKV, ...");
  parser.AddInt("budget", &o.budget, "cache budget in tokens (compressed policies)");
  parser.AddDouble("timeout", &o.timeout_s, "deadline of the call in seconds");
  parser.AddBool("json", &o.json, "print every message as one JSON line");
  if (auto s = parser.Parse(args); !s.ok()) {
    std::cerr << "kvserve-cli stream: " << s.message() << "\n\n" << parser.Help();
    return 2;
  }
  if (parser.help_requested()) {
    std::cout << parser.Help();
    return 0;
  }
  v1::GenerateRequest request;
  if (auto s = BuildRequest(o, request); !s.ok()) {
    std::cerr << "kvserve-cli stream: " << s.message() << "\n";
    return 2;
  }

  auto server = o.connection.Open();
  if (!server.ok()) {
    std::cerr << "kvserve-cli stream: " << server.status().message() << "\n";
    return 2;
  }
  auto stub = v1::Generation::NewStub(server->channel);
  grpc::ClientContext context;
  server->Authorize(context);
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  v1::Usage usage;
  std::string finish;
  while (reader->Read(&response)) {
    if (o.json) {
      std::string line;
      google::protobuf::util::JsonPrintOptions options;
      options.preserve_proto_field_names = true;
      (void)google::protobuf::util::MessageToJsonString(response, &line, options);
      std::cout << line << std::endl;
    } else {
      std::cout << response.text() << std::flush;
    }
    if (response.has_usage()) usage = response.usage();
    if (response.finish_reason() != v1::GenerateResponse::FINISH_REASON_UNSPECIFIED) {
      finish = v1::GenerateResponse::FinishReason_Name(response.finish_reason());
    }
  }
  const grpc::Status status = reader->Finish();
  if (!o.json) std::cout << "\n";
  if (!status.ok()) {
    std::cerr << "kvserve-cli stream: " << status.error_code() << " " << status.error_message()
              << "\n";
    return 1;
  }
  if (!o.json) {
    std::cerr << "[" << finish << "] prompt " << usage.prompt_tokens() << " tokens, completion "
              << usage.completion_tokens() << " tokens, TTFT " << usage.time_to_first_token_ms()
              << " ms\n";
  }
  return 0;
}

}  // namespace kvserve
