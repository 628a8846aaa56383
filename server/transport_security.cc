#include "server/transport_security.h"

#include <absl/strings/str_cat.h>

#include <fstream>
#include <iterator>

namespace kvserve {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in.is_open() || in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  }
  if (text.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " holds no PEM block"));
  }
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const ServerConfig& config, std::shared_ptr<grpc::AuthMetadataProcessor> auth) {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (config.tls_cert.empty()) {
    if (auth == nullptr) return grpc::InsecureServerCredentials();
    credentials = grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  } else {
    auto cert = ReadPemFile(config.tls_cert, "--tls-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(config.tls_key, "--tls-key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    options.pem_key_cert_pairs.push_back({*key, *cert});
    if (!config.tls_client_ca.empty()) {
      auto ca = ReadPemFile(config.tls_client_ca, "--tls-client-ca");
      if (!ca.ok()) return ca.status();
      options.pem_root_certs = *ca;
      options.client_certificate_request =
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(options);
  }
  if (auth != nullptr) credentials->SetAuthMetadataProcessor(std::move(auth));
  return credentials;
}

}  // namespace kvserve
