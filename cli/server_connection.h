// How kvserve-cli's client commands (stream, health) reach a running server: its address, TLS (the
// CA that signed the server's certificate, and a client certificate for mutual TLS) and the API key
// (the server's --tls-* and --api-keys-file), as options of the command.
#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "cli/arg_parser.h"

namespace kvserve {

// An open channel and the key its calls carry.
struct ServerChannel {
  std::shared_ptr<grpc::Channel> channel;
  std::string api_key;  // empty: none
  // Adds "authorization: Bearer <key>" to `context` when there is a key.
  void Authorize(grpc::ClientContext& context) const;
};

struct ServerConnection {
  std::string server = "127.0.0.1:50051";
  std::string tls_ca;    // PEM CA of the server's certificate: TLS; empty: plaintext
  std::string tls_cert;  // PEM client certificate and key, for mutual TLS
  std::string tls_key;
  std::string api_key_file;  // a file whose first line is the API key

  // --server, --tls-ca, --tls-cert, --tls-key and --api-key-file.
  void AddOptions(ArgParser& parser);
  // Reads the files now; INVALID_ARGUMENT naming the option of one that cannot be read, or of a
  // client certificate without its key.
  absl::StatusOr<ServerChannel> Open() const;
};

}  // namespace kvserve
