// Transport security and access control against the real server, with certificates made by the
// test: TLS serves and refuses plaintext, mutual TLS refuses a client without a certificate and
// one signed by another CA, a missing or wrong API key gets UNAUTHENTICATED and leaves no trace in
// the engine (nothing admitted, no prompt token counted, nothing logged of it), health and
// reflection stay open, and SIGHUP re-reads the keys file.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>

#include "tests/e2e/client.h"
#include "tests/e2e/reflection_client.h"
#include "tests/e2e/scrape.h"
#include "tests/e2e/server_process.h"
#include "tests/metrics/exposition.h"
#include "tests/test_pki.h"
#include "tests/test_support.h"

namespace kvserve::testing {
namespace {

using std::chrono::seconds;

const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378};

// A keys file in a temporary folder, removed with the object.
class KeysFile {
 public:
  explicit KeysFile(const std::string& text) {
    char name[] = "/tmp/kvserve-keys-XXXXXX";
    close(mkstemp(name));
    path_ = name;
    Write(text);
  }
  ~KeysFile() { unlink(path_.c_str()); }
  void Write(const std::string& text) const { std::ofstream(path_, std::ios::trunc) << text; }
  std::string flag() const { return "--api-keys-file=" + path_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// TLS credentials that trust `ca`, with a client certificate when `cert` is given.
std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const std::string& ca,
                                                         const std::string& cert = "",
                                                         const std::string& key = "") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadTextFile(ca);
  if (!cert.empty()) {
    options.pem_cert_chain = ReadTextFile(cert);
    options.pem_private_key = ReadTextFile(key);
  }
  return grpc::SslCredentials(options);
}

StreamResult GenerateOn(std::shared_ptr<grpc::Channel> channel, const std::string& api_key = "",
                        const std::string& request_id = "") {
  auto stub = v1::Generation::NewStub(std::move(channel));
  v1::GenerateRequest request = GreedyRequest(kPrompt, 8);
  request.set_request_id(request_id);
  return Generate(*stub, request, seconds(30), api_key);
}

// Runs kvserve-cli with `args` (a shell line); its exit code and everything it printed.
std::pair<int, std::string> RunCli(const std::string& args) {
  FILE* pipe = popen((std::string(KVSERVE_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string out;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) out.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

double Sample(const std::string& exposition, const std::string& name, LabelSet labels = {}) {
  labels.emplace("model_name", "stories260K");
  return SampleValue(exposition, name, labels).value_or(-1);
}

TEST(SecurityE2eTest, TlsServesWithAKeyAndRefusesPlaintextAndUntrustedServers) {
  KVSERVE_REQUIRE_STORIES260K();
  TestPki pki;
  ASSERT_TRUE(pki.ok()) << pki.error();
  KeysFile keys("tls-key-1\n");
  ServerProcess server(
      {"--tls-cert=" + pki.server_cert(), "--tls-key=" + pki.server_key(), keys.flag()});
  ASSERT_TRUE(server.started()) << server.log();

  auto tls = NewChannel(server.address(), TlsCredentials(pki.ca_cert()));
  const StreamResult ok = GenerateOn(tls, "tls-key-1");
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.token_ids.size(), 8u);
  EXPECT_EQ(GenerateOn(tls, "").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(HealthStatus(tls), grpc::health::v1::HealthCheckResponse::SERVING);

  // A plaintext client, and one that does not trust the server's CA, never get a call through.
  EXPECT_EQ(GenerateOn(NewChannel(server.address()), "tls-key-1").status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  auto untrusting = NewChannel(server.address(), TlsCredentials(pki.other_ca_cert()));
  EXPECT_EQ(GenerateOn(untrusting, "tls-key-1").status.error_code(), grpc::StatusCode::UNAVAILABLE);

  // kvserve-cli speaks TLS and sends the key (the first line of its --api-key-file).
  const std::string cli_tls = "--server " + server.address() + " --tls-ca " + pki.ca_cert();
  const auto [streamed, stream_out] =
      RunCli("stream " + cli_tls + " --api-key-file " + keys.path() +
             " --prompt 'Once upon a time' " + "--max-new-tokens 4");
  EXPECT_EQ(streamed, 0) << stream_out;
  const auto [keyless, keyless_out] = RunCli("stream " + cli_tls + " --prompt Once");
  EXPECT_EQ(keyless, 1) << keyless_out;
  EXPECT_NE(keyless_out.find("API key"), std::string::npos) << keyless_out;
  const auto [healthy, health_out] = RunCli("health " + cli_tls);
  EXPECT_EQ(healthy, 0) << health_out;
  EXPECT_EQ(RunCli("health --server " + server.address()).first, 1);
}

TEST(SecurityE2eTest, MutualTlsRefusesClientsWithoutACertificateOfItsCa) {
  KVSERVE_REQUIRE_STORIES260K();
  TestPki pki;
  ASSERT_TRUE(pki.ok()) << pki.error();
  const int metrics_port = ServerProcess::FreePort();
  ServerProcess server({"--tls-cert=" + pki.server_cert(), "--tls-key=" + pki.server_key(),
                        "--tls-client-ca=" + pki.ca_cert(), "--metrics-tls",
                        "--metrics-port=" + std::to_string(metrics_port)});
  ASSERT_TRUE(server.started()) << server.log();

  const StreamResult ok = GenerateOn(NewChannel(
      server.address(), TlsCredentials(pki.ca_cert(), pki.client_cert(), pki.client_key())));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.token_ids.size(), 8u);
  const StreamResult anonymous =
      GenerateOn(NewChannel(server.address(), TlsCredentials(pki.ca_cert())));
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << anonymous.status.error_message();
  const StreamResult foreign =
      GenerateOn(NewChannel(server.address(), TlsCredentials(pki.ca_cert(), pki.other_client_cert(),
                                                             pki.other_client_key())));
  EXPECT_EQ(foreign.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << foreign.status.error_message();

  // /metrics under --metrics-tls: HTTPS with the same certificate and client CA, no plain HTTP.
  EXPECT_EQ(ScrapeMetrics(metrics_port), "");
  httplib::SSLClient scraper("127.0.0.1", metrics_port, pki.client_cert(), pki.client_key());
  scraper.set_ca_cert_path(pki.ca_cert().c_str());
  scraper.enable_server_certificate_verification(true);
  scraper.set_connection_timeout(5);
  auto scrape = scraper.Get("/metrics");
  ASSERT_TRUE(scrape) << httplib::to_string(scrape.error());
  EXPECT_EQ(scrape->status, 200);
  // Only the client with a certificate of the CA reached the engine.
  EXPECT_EQ(Sample(scrape->body, "kvserve_requests_by_policy_total", {{"policy", "FULL"}}), 1);
  httplib::SSLClient no_certificate("127.0.0.1", metrics_port);
  no_certificate.enable_server_certificate_verification(false);
  no_certificate.set_connection_timeout(5);
  EXPECT_FALSE(no_certificate.Get("/metrics"));
}

TEST(SecurityE2eTest, MissingOrWrongApiKeyIsUnauthenticatedAndNeverReachesTheEngine) {
  KVSERVE_REQUIRE_STORIES260K();
  KeysFile keys("# the operators' keys\nkey-alpha-123\n\n   key-beta-456   \n");
  const int metrics_port = ServerProcess::FreePort();
  ServerProcess server(
      {keys.flag(), "--metrics-port=" + std::to_string(metrics_port), "--log-level=debug"});
  ASSERT_TRUE(server.started()) << server.log();
  auto channel = NewChannel(server.address());

  const std::vector<std::pair<std::string, std::string>> refused = {
      {"none", ""},
      {"unknown", "Bearer key-gamma-789"},
      {"prefix of a key", "Bearer key-alpha-12"},
      {"key with more", "Bearer key-alpha-1234"},
      {"other scheme", "Basic key-alpha-123"},
      {"bare key", "key-alpha-123"},
      {"empty bearer", "Bearer "},
      {"comment line", "Bearer #"},
  };
  auto stub = v1::Generation::NewStub(channel);
  for (size_t i = 0; i < refused.size(); ++i) {
    grpc::ClientContext context;
    SetTimeout(context, seconds(10));
    if (!refused[i].second.empty()) context.AddMetadata("authorization", refused[i].second);
    v1::GenerateRequest request = GreedyRequest(kPrompt, 8);
    request.set_request_id("refused-" + std::to_string(i));
    const StreamResult r = ReadStream(*stub, context, request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << refused[i].first << ": " << r.status.error_message();
    EXPECT_EQ(r.messages, 0) << refused[i].first;
  }
  {
    grpc::ClientContext context;
    SetTimeout(context, seconds(10));
    v1::TokenizeResponse tokens;
    EXPECT_EQ(stub->Tokenize(&context, v1::TokenizeRequest(), &tokens).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    SetTimeout(context, seconds(10));
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  // Open without a key.
  EXPECT_EQ(HealthStatus(channel), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(ReflectedServices(channel).count("kvserve.v1.Generation"));

  // Each key of the file works, the one written with spaces around it too.
  const std::vector<std::string> accepted = {"key-alpha-123", "key-beta-456"};
  for (size_t i = 0; i < accepted.size(); ++i) {
    const StreamResult r = GenerateOn(channel, accepted[i], "accepted-" + std::to_string(i));
    EXPECT_TRUE(r.status.ok()) << accepted[i] << ": " << r.status.error_message();
    EXPECT_EQ(r.token_ids.size(), 8u);
  }

  // The engine saw the two accepted requests only; the refusals are counted as such.
  const std::string metrics = ScrapeMetrics(metrics_port);
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(Sample(metrics, "kvserve_requests_by_policy_total", {{"policy", "FULL"}}), 2);
  EXPECT_EQ(Sample(metrics, "kvserve_prompt_tokens_total"), 2.0 * kPrompt.size());
  EXPECT_EQ(Sample(metrics, "kvserve_request_success_total", {{"finished_reason", "length"}}), 2);
  EXPECT_EQ(Sample(metrics, "kvserve_request_failure_total", {{"code", "UNAUTHENTICATED"}}),
            static_cast<double>(refused.size()));
  // Nothing of the refused requests in the log (at debug level), and no key at all.
  const std::string log = server.log();
  EXPECT_NE(log.find("accepted-1"), std::string::npos) << log;
  for (const char* secret : {"refused-", "key-alpha", "key-beta", "key-gamma"}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << secret << " in:\n" << log;
  }
}

TEST(SecurityE2eTest, SighupReReadsTheKeysFileAndKeepsTheKeysWhenItIsBad) {
  KVSERVE_REQUIRE_STORIES260K();
  KeysFile keys("key-one\n");
  ServerProcess server({keys.flag()});
  ASSERT_TRUE(server.started()) << server.log();
  auto channel = NewChannel(server.address());
  EXPECT_TRUE(GenerateOn(channel, "key-one").status.ok());
  EXPECT_EQ(GenerateOn(channel, "key-two").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  keys.Write("key-two\n");
  server.Signal(SIGHUP);
  ASSERT_TRUE(server.WaitForLog("received SIGHUP: 1 API keys loaded", 1, seconds(10)))
      << server.log();
  EXPECT_EQ(GenerateOn(channel, "key-one").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(GenerateOn(channel, "key-two").status.ok());

  // A file that does not parse changes nothing; the server goes on.
  keys.Write("key three has spaces\n");
  server.Signal(SIGHUP);
  ASSERT_TRUE(server.WaitForLog("the keys held stay", 1, seconds(10))) << server.log();
  EXPECT_TRUE(GenerateOn(channel, "key-two").status.ok());
  EXPECT_EQ(GenerateOn(channel, "key-one").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server.log().find("key three"), std::string::npos);
}

// Keys in clear across a network are refused at start-up, before the model loads.
TEST(SecurityE2eTest, ApiKeysWithoutTlsBeyondLoopbackAreRefused) {
  KVSERVE_REQUIRE_STORIES260K();
  KeysFile keys("key-one\n");
  ServerProcess server({keys.flag(), "--host=0.0.0.0"});
  EXPECT_FALSE(server.started());
  EXPECT_EQ(server.WaitForExit(seconds(10)), 2);
  EXPECT_NE(server.log().find("needs --tls-cert and --tls-key"), std::string::npos) << server.log();
}

}  // namespace
}  // namespace kvserve::testing
