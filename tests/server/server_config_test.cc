// ServerConfig's checks of the hardening flags and the gRPC arguments its limits come to.
#include "server/server_config.h"

#include <grpc/grpc.h>
#include <gtest/gtest.h>

#include <climits>
#include <map>

#include "server/connection_limits.h"

namespace kvserve {
namespace {

std::string Refusal(const ServerConfig& config) {
  const absl::Status s = config.Validate();
  return s.ok() ? "" : std::string(s.message());
}

TEST(ServerConfigTest, DefaultsAreValid) { EXPECT_EQ(Refusal(ServerConfig()), ""); }

TEST(ServerConfigTest, TlsFilesGoTogether) {
  ServerConfig c;
  c.tls_cert = "cert.pem";
  EXPECT_NE(Refusal(c).find("--tls-cert and --tls-key"), std::string::npos);
  c.tls_key = "key.pem";
  EXPECT_EQ(Refusal(c), "");
  ServerConfig no_tls;
  no_tls.tls_client_ca = "ca.pem";
  EXPECT_NE(Refusal(no_tls).find("--tls-client-ca needs"), std::string::npos);
  ServerConfig metrics;
  metrics.metrics_tls = true;
  EXPECT_NE(Refusal(metrics).find("--metrics-tls needs"), std::string::npos);
}

TEST(ServerConfigTest, ApiKeysInClearOnlyOnLoopback) {
  ServerConfig c;
  c.api_keys_file = "keys";
  EXPECT_EQ(Refusal(c), "");  // 127.0.0.1
  c.host = "0.0.0.0";
  EXPECT_NE(Refusal(c).find("--api-keys-file on --host 0.0.0.0 needs --tls-cert"),
            std::string::npos);
  c.tls_cert = "cert.pem";
  c.tls_key = "key.pem";
  EXPECT_EQ(Refusal(c), "");
}

TEST(ServerConfigTest, LimitsAndDurationsAreChecked) {
  ServerConfig c;
  c.max_concurrent_streams = -1;
  EXPECT_NE(Refusal(c).find("--max-concurrent-streams"), std::string::npos);
  c = ServerConfig();
  c.keepalive_timeout_s = 0;
  EXPECT_NE(Refusal(c).find("--keepalive-timeout"), std::string::npos);
  c = ServerConfig();
  c.max_request_time_s = -1;
  EXPECT_NE(Refusal(c).find("--max-request-time"), std::string::npos);
  c = ServerConfig();
  c.keepalive_time_s = 1e9;  // more than gRPC's int milliseconds hold
  EXPECT_NE(Refusal(c).find("--keepalive-time"), std::string::npos);
  c = ServerConfig();
  c.max_connection_age_s = std::nan("");
  EXPECT_NE(Refusal(c).find("--max-connection-age"), std::string::npos);
}

TEST(ServerConfigTest, LoopbackHosts) {
  for (const char* host : {"127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.com", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(ConnectionLimitsTest, DefaultsAreGrpcsOwnKeepaliveAndAStreamLimit) {
  const auto list = ConnectionArguments(ServerConfig());
  const std::map<std::string, int> args(list.begin(), list.end());
  EXPECT_EQ(args.at(GRPC_ARG_KEEPALIVE_TIME_MS), 7200000);
  EXPECT_EQ(args.at(GRPC_ARG_KEEPALIVE_TIMEOUT_MS), 20000);
  EXPECT_EQ(args.at(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS), 300000);
  EXPECT_EQ(args.at(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS), 0);
  EXPECT_EQ(args.at(GRPC_ARG_MAX_CONCURRENT_STREAMS), 100);
  EXPECT_EQ(args.count(GRPC_ARG_MAX_CONNECTION_IDLE_MS), 0u);
  EXPECT_EQ(args.count(GRPC_ARG_MAX_CONNECTION_AGE_MS), 0u);
  EXPECT_EQ(args.count(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS), 0u);
}

TEST(ConnectionLimitsTest, SetLimitsBecomeArgumentsAndZeroTurnsThemOff) {
  ServerConfig c;
  c.keepalive_time_s = 0;
  c.keepalive_timeout_s = 1.5;
  c.keepalive_permit_without_calls = true;
  c.max_concurrent_streams = 0;
  c.max_connection_idle_s = 60;
  c.max_connection_age_s = 3600;
  c.max_connection_age_grace_s = 30;
  const auto list = ConnectionArguments(c);
  const std::map<std::string, int> args(list.begin(), list.end());
  EXPECT_EQ(args.at(GRPC_ARG_KEEPALIVE_TIME_MS), INT_MAX);
  EXPECT_EQ(args.at(GRPC_ARG_KEEPALIVE_TIMEOUT_MS), 1500);
  EXPECT_EQ(args.at(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS), 1);
  EXPECT_EQ(args.count(GRPC_ARG_MAX_CONCURRENT_STREAMS), 0u);
  EXPECT_EQ(args.at(GRPC_ARG_MAX_CONNECTION_IDLE_MS), 60000);
  EXPECT_EQ(args.at(GRPC_ARG_MAX_CONNECTION_AGE_MS), 3600000);
  EXPECT_EQ(args.at(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS), 30000);
}

}  // namespace
}  // namespace kvserve
