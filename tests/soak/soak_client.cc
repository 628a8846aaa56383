// kvserve-soak: drives a running kvserve at overload for a bounded time with what a server on a
// cluster network meets (soak_requests.h): every served cache policy, client cancellations before
// and during streams, short deadlines, malformed and undecodable requests. Then it checks that
// every call ended with a status the action allows, that the engine is idle with its KV pool back
// to zero, and that the server's resident memory stayed flat after warm-up, and prints the figures.
// Exit 0 when every check holds. scripts/soak.sh starts the server and runs it.
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "kvserve/v1/generation.grpc.pb.h"
#include "server/flag_spelling.h"
#include "tests/e2e/scrape.h"
#include "tests/metrics/exposition.h"
#include "tests/soak/soak_requests.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "the kvserve server, HOST:PORT");
ABSL_FLAG(int32_t, metrics_port, 9400, "its /metrics port (plain HTTP on 127.0.0.1)");
ABSL_FLAG(int32_t, server_pid, 0, "its process id, for resident memory (/proc/PID/status)");
ABSL_FLAG(double, duration, 600, "seconds of load");
ABSL_FLAG(double, warmup, 60, "seconds after which resident memory must stay flat");
ABSL_FLAG(int32_t, concurrency, 96, "clients calling at once");
ABSL_FLAG(int32_t, channels, 4, "connections the clients share");
ABSL_FLAG(double, rss_growth_limit_mb, 32, "most growth of resident memory after warm-up, MiB");
ABSL_FLAG(uint64_t, seed, 1, "seed of the request mix");

namespace kvserve::soak {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kGenerate[] = "/kvserve.v1.Generation/Generate";

// Resident memory of `pid` in MiB, 0 if unknown.
double ResidentMib(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// Whether `code` is an acceptable end for `action` (anything else is a failure of the server).
bool Allowed(Action action, grpc::StatusCode code) {
  using C = grpc::StatusCode;
  // Overload refusals and the server's own limit may end any valid request.
  const bool overload = code == C::RESOURCE_EXHAUSTED || code == C::DEADLINE_EXCEEDED;
  switch (action) {
    case Action::kComplete:
      return code == C::OK || overload;
    case Action::kCancelEarly:
    case Action::kCancelMidStream:
      return code == C::CANCELLED || code == C::OK || overload;
    case Action::kDeadline:
      return code == C::DEADLINE_EXCEEDED || code == C::OK || code == C::RESOURCE_EXHAUSTED;
    case Action::kMalformed:
      return code == C::INVALID_ARGUMENT;
    case Action::kUndecodable:
      // grpc++ 1.51's callback handlers answer a request that does not parse with UNIMPLEMENTED
      // (and an empty message) before any of kvserve's code runs.
      return code == C::UNIMPLEMENTED || code == C::INTERNAL || code == C::INVALID_ARGUMENT;
  }
  return false;
}

struct Tally {
  std::mutex mutex;
  std::map<std::string, std::map<std::string, int64_t>> by_action;  // action -> code -> calls
  int64_t calls = 0, tokens = 0, disallowed = 0, bad_ok = 0;
  std::string first_disallowed;
};

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// One streaming call; returns its status, counting its tokens. An OK stream must end with a
// finish reason and as many tokens as the usage says.
grpc::Status Stream(v1::Generation::Stub& stub, const v1::GenerateRequest& request, Action action,
                    RequestMaker& maker, int64_t& tokens, bool& consistent) {
  grpc::ClientContext context;
  const auto timeout = action == Action::kDeadline
                           ? std::chrono::milliseconds(maker.Uniform(10, 1000))
                           : std::chrono::milliseconds(120000);
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  auto reader = stub.Generate(&context, request);
  if (action == Action::kCancelEarly) context.TryCancel();
  const int64_t cancel_after = action == Action::kCancelMidStream ? maker.Uniform(1, 20) : -1;
  v1::GenerateResponse response;
  int64_t messages = 0;
  bool finished = false;
  int64_t completion = -1;
  while (reader->Read(&response)) {
    tokens += response.token_ids_size();
    if (response.finish_reason() != v1::GenerateResponse::FINISH_REASON_UNSPECIFIED) {
      finished = true;
      completion = response.usage().completion_tokens();
    }
    if (++messages == cancel_after) context.TryCancel();
  }
  const grpc::Status status = reader->Finish();
  consistent = !status.ok() || (finished && completion == tokens);
  return status;
}

// Bytes that are no GenerateRequest, through the generic stub.
grpc::Status SendUndecodable(grpc::GenericStub& stub, RequestMaker& maker) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const std::string bytes = maker.Undecodable();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, kGenerate, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

void Client(std::shared_ptr<grpc::Channel> channel, ModelLimits limits, uint64_t seed,
            Clock::time_point end, Tally& tally) {
  auto stub = v1::Generation::NewStub(channel);
  grpc::GenericStub generic(channel);
  RequestMaker maker(std::move(limits), seed);
  while (Clock::now() < end) {
    const Action action = maker.NextAction();
    int64_t tokens = 0;
    bool consistent = true;
    grpc::Status status;
    if (action == Action::kUndecodable) {
      status = SendUndecodable(generic, maker);
    } else {
      const v1::GenerateRequest request =
          action == Action::kMalformed ? maker.Malformed() : maker.Valid();
      status = Stream(*stub, request, action, maker, tokens, consistent);
    }
    // Refused for overload: back off as a well-behaved client would, or the refusals alone would
    // keep the CPU busy and starve the engine.
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      std::this_thread::sleep_for(std::chrono::milliseconds(maker.Uniform(20, 200)));
    }
    std::lock_guard lock(tally.mutex);
    ++tally.calls;
    tally.tokens += tokens;
    ++tally.by_action[ActionName(action)][CodeName(status.error_code())];
    if (!consistent) ++tally.bad_ok;
    if (!Allowed(action, status.error_code())) {
      if (tally.disallowed++ == 0) {
        tally.first_disallowed = std::string(ActionName(action)) + ": " +
                                 CodeName(status.error_code()) + " " + status.error_message();
      }
    }
  }
}

absl::StatusOr<ModelLimits> ReadModel(v1::Generation::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ModelInfo info;
  const grpc::Status status = stub.GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return absl::UnavailableError("GetModelInfo: " + status.error_message());
  ModelLimits limits{info.name(), info.vocab_size(), info.context_length(), {}};
  for (const auto& p : info.cache_policies()) {
    if (p.served()) limits.served_policies.push_back(p.policy());
  }
  return limits;
}

// The engine's gauges once it has settled (at most 30 s): running, waiting, reserved KV bytes.
std::vector<double> SettledEngine(int metrics_port, const std::string& model_name) {
  const testing::LabelSet model = {{"model_name", model_name}};
  testing::LabelSet reserved = model;
  reserved.emplace("state", "reserved");
  std::vector<double> gauges;
  for (int i = 0; i < 300; ++i) {
    const std::string text = testing::ScrapeMetrics(metrics_port);
    gauges = {testing::SampleValue(text, "kvserve_num_requests_running", model).value_or(-1),
              testing::SampleValue(text, "kvserve_num_requests_waiting", model).value_or(-1),
              testing::SampleValue(text, "kvserve_kv_pool_bytes", reserved).value_or(-1)};
    if (gauges == std::vector<double>{0, 0, 0}) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return gauges;
}

int Run() {
  const std::string server = absl::GetFlag(FLAGS_server);
  const int pid = absl::GetFlag(FLAGS_server_pid);
  const double duration = absl::GetFlag(FLAGS_duration);
  const double warmup = std::min(absl::GetFlag(FLAGS_warmup), duration);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_channels)); ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection each
    channels.push_back(grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args));
  }
  auto limits = ReadModel(*v1::Generation::NewStub(channels[0]));
  if (!limits.ok()) {
    std::cerr << "kvserve-soak: " << server << ": " << limits.status().message() << "\n";
    return 2;
  }
  const double rss_start = ResidentMib(pid);
  std::cout << "kvserve-soak: " << duration << " s against " << server << ", "
            << absl::GetFlag(FLAGS_concurrency) << " clients on " << channels.size()
            << " connections, " << limits->served_policies.size() << " policies; RSS at start "
            << rss_start << " MiB" << std::endl;

  Tally tally;
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  std::vector<std::thread> clients;
  for (int i = 0; i < absl::GetFlag(FLAGS_concurrency); ++i) {
    clients.emplace_back(Client, channels[static_cast<size_t>(i) % channels.size()], *limits,
                         absl::GetFlag(FLAGS_seed) * 1000 + static_cast<uint64_t>(i), end,
                         std::ref(tally));
  }
  // Resident memory every 10 s; the samples after warm-up must stay within the growth limit.
  double rss_after_warmup = 0, rss_peak_after_warmup = 0;
  for (auto next = start; next < end; next += std::chrono::seconds(10)) {
    std::this_thread::sleep_until(next);
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double rss = ResidentMib(pid);
    if (elapsed >= warmup) {
      if (rss_after_warmup == 0) rss_after_warmup = rss;
      rss_peak_after_warmup = std::max(rss_peak_after_warmup, rss);
    }
    std::lock_guard lock(tally.mutex);
    std::cout << "  t=" << static_cast<int>(elapsed) << " s: " << tally.calls << " calls, RSS "
              << rss << " MiB" << std::endl;
  }
  for (auto& c : clients) c.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::vector<double> engine = SettledEngine(absl::GetFlag(FLAGS_metrics_port), limits->name);
  const double rss_end = ResidentMib(pid);
  if (rss_after_warmup == 0) rss_after_warmup = rss_end;
  const double growth = std::max(rss_peak_after_warmup, rss_end) - rss_after_warmup;

  std::cout << "calls " << tally.calls << " in " << seconds << " s, tokens streamed "
            << tally.tokens << "\n";
  for (const auto& [action, codes] : tally.by_action) {
    std::cout << "  " << action << ":";
    for (const auto& [code, n] : codes) std::cout << " " << code << "=" << n;
    std::cout << "\n";
  }
  std::cout << "engine at the end: running " << engine[0] << ", waiting " << engine[1]
            << ", KV pool reserved " << engine[2] << " bytes\n"
            << "RSS MiB: start " << rss_start << ", after warm-up (" << warmup << " s) "
            << rss_after_warmup << ", end " << rss_end << ", growth after warm-up " << growth
            << "\n";
  bool ok = true;
  auto check = [&ok](bool holds, const std::string& what) {
    if (!holds) std::cout << "FAILED: " << what << "\n";
    ok = ok && holds;
  };
  check(tally.disallowed == 0, std::to_string(tally.disallowed) +
                                   " calls ended with a code their action does not allow; first: " +
                                   tally.first_disallowed);
  check(tally.bad_ok == 0, std::to_string(tally.bad_ok) + " OK streams without a consistent end");
  check(engine[0] == 0 && engine[1] == 0 && engine[2] == 0, "the engine is not idle at the end");
  check(pid == 0 || growth <= absl::GetFlag(FLAGS_rss_growth_limit_mb),
        "resident memory grew after warm-up");
  std::cout << (ok ? "kvserve-soak: PASSED" : "kvserve-soak: FAILED") << std::endl;
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace kvserve::soak

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kvserve-soak: overload a running kvserve with cancellations, deadlines and malformed\n"
      "requests for --duration seconds, then check it ended every call and is back at rest.");
  std::vector<std::string> storage;
  std::vector<char*> args = kvserve::UnderscoreFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return kvserve::soak::Run();
}
