// The API keys a server accepts, read from a file: one key per line; surrounding whitespace, blank
// lines and lines starting with '#' are ignored. The file can be re-read at any time (kvserve does
// on SIGHUP); a read that fails keeps the keys held before.
//
// Keys are held only as SHA-256 digests and compared in constant time, and no method logs or
// returns a key, so that neither memory dumps nor logs nor timing give one away.
//
// Threads: every method may be called from any thread at any time.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvserve {

using ApiKeyDigest = std::array<uint8_t, 32>;  // SHA-256

// The digests of the keys in the text of a keys file. INVALID_ARGUMENT naming the line of a key
// with a character outside printable ASCII or inner whitespace (a "Bearer" header could not carry
// it).
absl::StatusOr<std::vector<ApiKeyDigest>> ParseApiKeys(std::string_view text);

class ApiKeyStore {
 public:
  // Holds no key until Load() succeeds.
  explicit ApiKeyStore(std::string path) : path_(std::move(path)) {}

  // (Re)reads the file and replaces the keys held; returns how many there are now. On error
  // (INVALID_ARGUMENT for an unreadable or malformed file, naming the path and the line) the keys
  // held before stay.
  absl::StatusOr<size_t> Load();

  // Whether `key` is one of the keys held.
  bool Accepts(std::string_view key) const;

  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  mutable std::shared_mutex mutex_;
  std::vector<ApiKeyDigest> digests_;  // guarded by mutex_
};

}  // namespace kvserve
