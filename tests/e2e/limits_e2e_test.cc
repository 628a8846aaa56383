// Per-request and per-connection limits: --max-request-time ends a long generation with
// DEADLINE_EXCEEDED while short ones pass, and --max-concurrent-streams holds a connection's
// extra streams back (on the client) while another connection is served at once.
#include <gtest/gtest.h>

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

const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378};

// stories260K streams ~500 tokens in about a second on one CPU core: far more than 250 ms.
TEST(LimitsE2eTest, MaxRequestTimeEndsALongGenerationWithDeadlineExceeded) {
  KVSERVE_REQUIRE_STORIES260K();
  ServerProcess server({"--max-request-time=0.25"});
  ASSERT_TRUE(server.started()) << server.log();
  auto stub = NewGenerationStub(server.address());

  const auto start = Clock::now();
  const StreamResult late = Generate(*stub, GreedyRequest(kPrompt, 500), seconds(60));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << late.status.error_message();
  EXPECT_GT(late.token_ids.size(), 0u) << "it should have run until the limit";
  EXPECT_LT(late.token_ids.size(), 500u);
  EXPECT_GE(Clock::now() - start, milliseconds(250));
  EXPECT_LT(Clock::now() - start, seconds(30));

  const StreamResult quick = Generate(*stub, GreedyRequest(kPrompt, 4), seconds(30));
  EXPECT_TRUE(quick.status.ok()) << quick.status.error_message();
  EXPECT_EQ(quick.token_ids.size(), 4u);
}

// A stream on its own thread, with the times of its first and last messages.
struct TimedStream {
  struct Times {
    std::promise<void> started;
    Clock::time_point first = Clock::time_point::max();
    Clock::time_point last = Clock::time_point::max();
  };
  std::shared_ptr<Times> times = std::make_shared<Times>();
  std::future<void> started = times->started.get_future();
  std::future<StreamResult> result;  // get() before reading the times
};

TimedStream StartStream(v1::Generation::Stub& stub, int32_t max_new_tokens) {
  TimedStream s;
  s.result = std::async(std::launch::async, [&stub, times = s.times, max_new_tokens] {
    grpc::ClientContext context;
    SetTimeout(context, seconds(60));
    return ReadStream(stub, context, GreedyRequest(kPrompt, max_new_tokens),
                      [&](const v1::GenerateResponse&) {
                        times->last = Clock::now();
                        if (times->first != Clock::time_point::max()) return;
                        times->first = times->last;
                        times->started.set_value();
                      });
  });
  return s;
}

TEST(LimitsE2eTest, MaxConcurrentStreamsHoldsBackAConnectionsExtraStreams) {
  KVSERVE_REQUIRE_STORIES260K();
  ServerProcess server({"--max-concurrent-streams=1"});
  ASSERT_TRUE(server.started()) << server.log();
  auto one = v1::Generation::NewStub(NewChannel(server.address()));
  auto other = v1::Generation::NewStub(NewChannel(server.address()));

  TimedStream running = StartStream(*one, 500);
  ASSERT_EQ(running.started.wait_for(seconds(30)), std::future_status::ready);
  TimedStream held = StartStream(*one, 4);
  TimedStream elsewhere = StartStream(*other, 4);

  const StreamResult elsewhere_result = elsewhere.result.get();
  const StreamResult running_result = running.result.get();
  const StreamResult held_result = held.result.get();
  ASSERT_TRUE(running_result.status.ok()) << running_result.status.error_message();
  EXPECT_TRUE(elsewhere_result.status.ok()) << elsewhere_result.status.error_message();
  EXPECT_TRUE(held_result.status.ok()) << held_result.status.error_message();
  // The other connection was served while the first one's only stream ran; the first
  // connection's second stream started only after that stream's last message.
  EXPECT_LT(elsewhere.times->last, running.times->last);
  EXPECT_GT(held.times->first, running.times->last);
}

}  // namespace
}  // namespace kvserve::testing
