#include "server/stop_string_scanner.h"

#include <gtest/gtest.h>

#include "server/status_mapping.h"

namespace kvserve {
namespace {

TEST(StopStringScannerTest, NoStopsPassesEverythingThrough) {
  StopStringScanner s({});
  EXPECT_EQ(s.Push("abc").text, "abc");
  EXPECT_EQ(s.Flush(), "");
}

TEST(StopStringScannerTest, StopInsideOnePiece) {
  StopStringScanner s({"END"});
  auto r = s.Push("helloENDworld");
  EXPECT_EQ(r.text, "hello");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(s.Push("more").text, "");
  EXPECT_EQ(s.Flush(), "");
}

TEST(StopStringScannerTest, StopAcrossPiecesIsHeldBackUntilKnown) {
  StopStringScanner s({"END"});
  auto a = s.Push("helloE");
  EXPECT_EQ(a.text, "hello");  // "E" might start END
  EXPECT_FALSE(a.stopped);
  auto b = s.Push("N");
  EXPECT_EQ(b.text, "");
  auto c = s.Push("Dx");
  EXPECT_EQ(c.text, "");
  EXPECT_TRUE(c.stopped);
}

TEST(StopStringScannerTest, FalseStartIsReleased) {
  StopStringScanner s({"END"});
  EXPECT_EQ(s.Push("xE").text, "x");
  EXPECT_EQ(s.Push("Nd").text, "ENd");
  EXPECT_EQ(s.Push("E").text, "");
  EXPECT_EQ(s.Flush(), "E");  // the stream ended without the stop string
}

TEST(StopStringScannerTest, EarliestOfSeveralStopsWins) {
  StopStringScanner s({"cd", "b"});
  auto r = s.Push("abcd");
  EXPECT_EQ(r.text, "a");
  EXPECT_TRUE(r.stopped);
}

TEST(StatusMappingTest, CodesAndMessagesCarryOver) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status s = ToGrpcStatus(absl::ResourceExhaustedError("queue full"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "queue full");
  EXPECT_EQ(ToGrpcStatus(absl::UnimplementedError("x")).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("x")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("x")).error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace kvserve
