// kvserve-bench-serving: a real gRPC client that loads a running kvserve the way vLLM's
// benchmark_serving loads vLLM: N requests at a Poisson rate or all at once, at most C in flight,
// and reports TTFT, TPOT, ITL and E2E latency (mean, median, p90, p99), throughputs and errors by
// code, as a table and as JSON (--json-out).
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <semaphore>
#include <thread>

#include "bench/serving_stats.h"
#include "bench/workload.h"
#include "kvserve/v1/generation.grpc.pb.h"
#include "server/flag_spelling.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "the kvserve server, HOST:PORT");
ABSL_FLAG(int64_t, num_requests, 64, "requests to send");
ABSL_FLAG(double, request_rate, 0, "requests per second, Poisson arrivals; 0: all at once");
ABSL_FLAG(int64_t, concurrency, 0, "most requests in flight; 0: no limit");
ABSL_FLAG(int64_t, prompt_len, 32, "prompt length: tokens (random ids) or words (--dataset)");
ABSL_FLAG(int64_t, prompt_len_max, 0, "if > --prompt-len: uniform in [prompt-len, this]");
ABSL_FLAG(int64_t, output_len, 128, "max_new_tokens of each request");
ABSL_FLAG(int64_t, output_len_max, 0, "if > --output-len: uniform in [output-len, this]");
ABSL_FLAG(std::string, dataset, "",
          "text file of prompts (documents split at <|endoftext|> or blank lines), e.g. "
          "../shared/data/tinystories/valid.txt; empty: random token ids");
ABSL_FLAG(std::string, policies, "FULL",
          "cache policies, comma list of NAME[:BUDGET] cycled over the requests "
          "(e.g. FULL,STREAMING_LLM:64)");
ABSL_FLAG(double, temperature, 0, "sampling temperature; 0: greedy");
ABSL_FLAG(bool, ignore_eos, true, "generate exactly the output length");
ABSL_FLAG(uint64_t, seed, 0, "seed of the workload and of the requests' sampling");
ABSL_FLAG(double, timeout, 600, "deadline of each request in seconds");
ABSL_FLAG(std::string, json_out, "", "also write the summary as JSON to this file");

namespace kvserve::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string CodeName(grpc::StatusCode code) {
  static const char* names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? names[i] : "CODE_" + std::to_string(i);
}

RequestRecord RunOne(v1::Generation::Stub& stub, const v1::GenerateRequest& request,
                     double timeout_s) {
  RequestRecord record;
  record.policy = v1::CacheConfig::CachePolicy_Name(request.cache().policy());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  const auto start = Clock::now();
  auto last = start;
  bool first = true;
  auto reader = stub.Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    const auto now = Clock::now();
    if (response.token_ids_size() > 0) {
      if (first) {
        record.ttft_s = SecondsBetween(start, now);
        first = false;
      } else {
        record.itl_s.push_back(SecondsBetween(last, now));
      }
      last = now;
      record.output_tokens += response.token_ids_size();
    }
    if (response.has_usage()) record.prompt_tokens = response.usage().prompt_tokens();
  }
  const grpc::Status status = reader->Finish();
  record.e2e_s = SecondsBetween(start, Clock::now());
  record.ok = status.ok();
  if (!status.ok()) record.error_code = CodeName(status.error_code());
  return record;
}

absl::StatusOr<int64_t> VocabSize(v1::Generation::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ModelInfo info;
  const grpc::Status status = stub.GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  if (!status.ok()) {
    return absl::UnavailableError("GetModelInfo failed: " + status.error_message());
  }
  return info.vocab_size();
}

int Run() {
  const std::string server = absl::GetFlag(FLAGS_server);
  auto stub =
      v1::Generation::NewStub(grpc::CreateChannel(server, grpc::InsecureChannelCredentials()));
  auto vocab = VocabSize(*stub);
  if (!vocab.ok()) {
    std::cerr << "kvserve-bench-serving: " << server << ": " << vocab.status().message() << "\n";
    return 1;
  }
  WorkloadOptions w;
  w.num_requests = absl::GetFlag(FLAGS_num_requests);
  w.prompt_len = absl::GetFlag(FLAGS_prompt_len);
  w.prompt_len_max = absl::GetFlag(FLAGS_prompt_len_max);
  w.output_len = absl::GetFlag(FLAGS_output_len);
  w.output_len_max = absl::GetFlag(FLAGS_output_len_max);
  w.dataset = absl::GetFlag(FLAGS_dataset);
  w.policies = absl::GetFlag(FLAGS_policies);
  w.temperature = absl::GetFlag(FLAGS_temperature);
  w.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  w.request_rate = absl::GetFlag(FLAGS_request_rate);
  w.seed = absl::GetFlag(FLAGS_seed);
  auto workload = BuildWorkload(w, *vocab);
  if (!workload.ok()) {
    std::cerr << "kvserve-bench-serving: " << workload.status().message() << "\n";
    return 2;
  }
  const int64_t concurrency = absl::GetFlag(FLAGS_concurrency) > 0
                                  ? absl::GetFlag(FLAGS_concurrency)
                                  : static_cast<int64_t>(workload->size());
  const double timeout_s = absl::GetFlag(FLAGS_timeout);
  std::cerr << "kvserve-bench-serving: " << workload->size() << " requests to " << server
            << ", rate " << (w.request_rate > 0 ? std::to_string(w.request_rate) : "inf")
            << " req/s, concurrency " << concurrency << "\n";

  std::counting_semaphore<> slots(static_cast<std::ptrdiff_t>(concurrency));
  std::vector<RequestRecord> records(workload->size());
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (size_t i = 0; i < workload->size(); ++i) {
    const auto send_at = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>((*workload)[i].send_at_s));
    std::this_thread::sleep_until(send_at);
    slots.acquire();
    threads.emplace_back([&, i] {
      records[i] = RunOne(*stub, (*workload)[i].request, timeout_s);
      slots.release();
    });
  }
  for (auto& t : threads) t.join();
  const BenchSummary summary = SummarizeRun(records, SecondsBetween(start, Clock::now()));
  std::cout << FormatTable(summary);
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    nlohmann::json json = ToJson(summary);
    json["server"] = server;
    json["concurrency"] = concurrency;
    json["request_rate"] = w.request_rate;
    json["policies"] = w.policies;
    std::ofstream(path) << json.dump(2) << "\n";
  }
  return summary.succeeded == summary.requests ? 0 : 1;
}

}  // namespace
}  // namespace kvserve::bench

int main(int argc, char** argv) {
  absl::FlagsUsageConfig usage_config;  // --help lists this file's flags (not only a main.cc's)
  usage_config.contains_help_flags = [](absl::string_view path) {
    return path.find("bench/") != absl::string_view::npos;
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "kvserve-bench-serving: load a running kvserve over gRPC and report TTFT/TPOT/ITL.\n"
      "usage: kvserve-bench-serving --server HOST:PORT [--num-requests N] [--concurrency C] "
      "[--request-rate R] ...  ('-' and '_' in flag names alike)");
  std::vector<std::string> storage;
  std::vector<char*> args = kvserve::UnderscoreFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return kvserve::bench::Run();
}
