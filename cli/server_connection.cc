#include "cli/server_connection.h"

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>

#include <fstream>
#include <iterator>

namespace kvserve {
namespace {

absl::StatusOr<std::string> ReadOptionFile(const std::string& path, const std::string& option) {
  std::ifstream in(path, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in.is_open() || in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("--", option, ": cannot read ", path));
  }
  return text;
}

}  // namespace

void ServerChannel::Authorize(grpc::ClientContext& context) const {
  if (!api_key.empty()) context.AddMetadata("authorization", "Bearer " + api_key);
}

void ServerConnection::AddOptions(ArgParser& parser) {
  parser.AddString("server", &server, "the kvserve server");
  parser.AddString("tls-ca", &tls_ca, "PEM CA of the server's certificate: TLS; empty: plaintext");
  parser.AddString("tls-cert", &tls_cert, "PEM client certificate, for mutual TLS (with --tls-ca)");
  parser.AddString("tls-key", &tls_key, "PEM private key of --tls-cert");
  parser.AddString("api-key-file", &api_key_file, "file whose first line is the API key");
}

absl::StatusOr<ServerChannel> ServerConnection::Open() const {
  ServerChannel out;
  if (!api_key_file.empty()) {
    auto text = ReadOptionFile(api_key_file, "api-key-file");
    if (!text.ok()) return text.status();
    out.api_key = std::string(absl::StripAsciiWhitespace(text->substr(0, text->find('\n'))));
  }
  if (tls_ca.empty()) {
    if (!tls_cert.empty()) return absl::InvalidArgumentError("--tls-cert needs --tls-ca");
    out.channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
    return out;
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions options;
  for (const auto& [path, option, field] :
       {std::tuple{&tls_ca, "tls-ca", &options.pem_root_certs},
        std::tuple{&tls_cert, "tls-cert", &options.pem_cert_chain},
        std::tuple{&tls_key, "tls-key", &options.pem_private_key}}) {
    if (path->empty()) continue;
    auto text = ReadOptionFile(*path, option);
    if (!text.ok()) return text.status();
    *field = std::move(*text);
  }
  out.channel = grpc::CreateChannel(server, grpc::SslCredentials(options));
  return out;
}

}  // namespace kvserve
