// The credentials kvserve's gRPC port listens with (ServerConfig's --tls-* and --api-keys-file):
// - --tls-cert and --tls-key: TLS. With --tls-client-ca, mutual TLS: a client must present a
//   certificate that chains to that CA, or the handshake fails (no call is ever made).
// - Neither: plaintext, for development on loopback. With API keys, gRPC's local TCP credentials:
//   plaintext on the wire too, but they refuse peers that are not on loopback, and they are the
//   plaintext credentials on which gRPC runs an AuthMetadataProcessor (ServerConfig::Validate
//   refuses keys without TLS on a non-loopback host).
#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "server/server_config.h"

namespace kvserve {

// `auth` (null: none) runs on every call. Reads the PEM files now; INVALID_ARGUMENT naming the flag
// of a file that cannot be read or holds no PEM block.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const ServerConfig& config, std::shared_ptr<grpc::AuthMetadataProcessor> auth);

// The contents of a PEM file given with `flag` (e.g. "--tls-cert"), checked to hold a PEM block.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag);

}  // namespace kvserve
