// The life of streams beside each other: cancellation frees KV memory at once, a deadline ends only
// its own stream, a full queue refuses at once, and SIGTERM drains before the process exits 0.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <future>
#include <thread>

#include "tests/e2e/client.h"
#include "tests/e2e/server_process.h"
#include "tests/test_support.h"

namespace kvserve::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// stories260K keeps 1280 bytes of KV per token: this pool (697,932 bytes) holds one FULL request of
// 512 tokens (655,360 bytes) and not a second one of 405 (518,400 bytes).
const std::string kOneRequestPool = "--kv-cache-gb=0.00065";
constexpr int kSecondMaxNew = 400;
const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378};

// A stream run on its own thread, with its first message and end observable.
class BackgroundStream {
 public:
  BackgroundStream(v1::Generation::Stub& stub, v1::GenerateRequest request,
                   milliseconds timeout = seconds(60)) {
    SetTimeout(context_, timeout);
    thread_ = std::thread([this, &stub, request] {
      result_ = ReadStream(stub, context_, request, [this](const v1::GenerateResponse&) {
        if (first_.exchange(true)) return;
        first_time_ = Clock::now();
        first_promise_.set_value();
      });
      done_ = true;
    });
  }
  ~BackgroundStream() { Join(); }

  bool WaitForFirstMessage(milliseconds timeout) {
    return first_future_.wait_for(timeout) == std::future_status::ready;
  }
  bool started() const { return first_; }
  bool done() const { return done_; }
  Clock::time_point first_time() const { return first_time_; }
  void Cancel() { context_.TryCancel(); }
  const StreamResult& Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  grpc::ClientContext context_;
  std::atomic<bool> first_{false};
  std::atomic<bool> done_{false};
  Clock::time_point first_time_;
  std::promise<void> first_promise_;
  std::future<void> first_future_ = first_promise_.get_future();
  StreamResult result_;
  std::thread thread_;
};

std::unique_ptr<ServerProcess> StartServer(std::vector<std::string> args) {
  auto server = std::make_unique<ServerProcess>(std::move(args));
  EXPECT_TRUE(server->started()) << server->log();
  return server;
}

TEST(LifecycleE2eTest, CancellingAStreamFreesItsMemoryAtOnce) {
  KVSERVE_REQUIRE_STORIES260K();
  auto server = StartServer({kOneRequestPool});
  ASSERT_TRUE(server->started());
  auto stub = NewGenerationStub(server->address());

  BackgroundStream first(*stub, GreedyRequest({1}, 511));
  ASSERT_TRUE(first.WaitForFirstMessage(seconds(30)));
  BackgroundStream second(*stub, GreedyRequest(kPrompt, kSecondMaxNew));
  std::this_thread::sleep_for(milliseconds(100));
  if (first.done()) GTEST_SKIP() << "the first stream ended before it could be cancelled";
  EXPECT_FALSE(second.started()) << "the pool should hold only one request";

  const auto cancelled_at = Clock::now();
  first.Cancel();
  const StreamResult& a = first.Join();
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(a.token_ids.size(), 511u);

  ASSERT_TRUE(second.WaitForFirstMessage(seconds(10))) << "not admitted after the cancel";
  EXPECT_GE(second.first_time(), cancelled_at);
  EXPECT_LT(second.first_time() - cancelled_at, seconds(2));
  const StreamResult& b = second.Join();
  EXPECT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(b.token_ids.size(), static_cast<size_t>(kSecondMaxNew));
}

TEST(LifecycleE2eTest, DeadlineEndsOnlyItsOwnStream) {
  KVSERVE_REQUIRE_STORIES260K();
  auto server = StartServer({});
  ASSERT_TRUE(server->started());
  auto stub = NewGenerationStub(server->address());

  BackgroundStream other(*stub, GreedyRequest(kPrompt, 300));
  const StreamResult late = Generate(*stub, GreedyRequest({1}, 511), milliseconds(60));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << late.status.error_message();
  const StreamResult& ok = other.Join();
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.token_ids.size(), 300u);
  // The server goes on: a new request completes.
  EXPECT_TRUE(Generate(*stub, GreedyRequest(kPrompt, 8), seconds(30)).status.ok());
}

TEST(LifecycleE2eTest, FullQueueRefusesAtOnceAndHealthAnswers) {
  KVSERVE_REQUIRE_STORIES260K();
  // One request runs, one waits (the pool holds one), the next is refused.
  auto server = StartServer({"--max-queue=1", kOneRequestPool});
  ASSERT_TRUE(server->started());
  auto stub = NewGenerationStub(server->address());

  BackgroundStream running(*stub, GreedyRequest({1}, 511));
  ASSERT_TRUE(running.WaitForFirstMessage(seconds(30)));
  BackgroundStream waiting(*stub, GreedyRequest(kPrompt, kSecondMaxNew));
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(HealthStatus(server->address()), grpc::health::v1::HealthCheckResponse::SERVING);

  const auto sent = Clock::now();
  const StreamResult refused = Generate(*stub, GreedyRequest(kPrompt, 16), seconds(10));
  const auto took = Clock::now() - sent;
  if (running.done()) GTEST_SKIP() << "the running stream ended before the queue could fill";
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  EXPECT_LT(took, seconds(1));
  EXPECT_EQ(HealthStatus(server->address()), grpc::health::v1::HealthCheckResponse::SERVING);

  running.Cancel();
  EXPECT_EQ(running.Join().status.error_code(), grpc::StatusCode::CANCELLED);
  const StreamResult& b = waiting.Join();
  EXPECT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(HealthStatus(server->address()), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(LifecycleE2eTest, SigtermLetsStreamsFinishThenExitsZero) {
  KVSERVE_REQUIRE_STORIES260K();
  auto server = StartServer({"--drain-timeout=20"});
  ASSERT_TRUE(server->started());
  auto stub = NewGenerationStub(server->address());

  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(std::make_unique<BackgroundStream>(*stub, GreedyRequest(kPrompt, 400)));
  }
  for (auto& s : streams) ASSERT_TRUE(s->WaitForFirstMessage(seconds(30)));
  server->Signal(SIGTERM);
  std::this_thread::sleep_for(milliseconds(100));
  if (!streams.back()->done()) {  // still draining: no new work, health says so
    EXPECT_EQ(HealthStatus(server->address()), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    EXPECT_EQ(Generate(*stub, GreedyRequest(kPrompt, 8), seconds(10)).status.error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  for (auto& s : streams) {
    const StreamResult& r = s->Join();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.token_ids.size(), 400u);
  }
  EXPECT_EQ(server->WaitForExit(seconds(30)), 0) << server->log();
}

TEST(LifecycleE2eTest, SigtermPastTheDrainTimeoutEndsStreamsUnavailable) {
  KVSERVE_REQUIRE_STORIES260K();
  auto server = StartServer({"--drain-timeout=0"});
  ASSERT_TRUE(server->started());
  auto stub = NewGenerationStub(server->address());

  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(std::make_unique<BackgroundStream>(*stub, GreedyRequest({1}, 511)));
  }
  for (auto& s : streams) ASSERT_TRUE(s->WaitForFirstMessage(seconds(30)));
  const auto signalled = Clock::now();
  server->Signal(SIGTERM);
  int unavailable = 0;
  for (auto& s : streams) {
    const StreamResult& r = s->Join();
    EXPECT_TRUE(r.status.ok() || r.status.error_code() == grpc::StatusCode::UNAVAILABLE)
        << r.status.error_code() << " " << r.status.error_message();
    unavailable += r.status.error_code() == grpc::StatusCode::UNAVAILABLE;
  }
  EXPECT_GT(unavailable, 0);
  EXPECT_EQ(server->WaitForExit(seconds(30)), 0) << server->log();
  EXPECT_LT(Clock::now() - signalled, seconds(10));
}

}  // namespace
}  // namespace kvserve::testing
