#include "server/api_keys.h"

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>

namespace kvserve {
namespace {

ApiKeyDigest Digest(std::string_view key) {
  ApiKeyDigest digest;
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest.data());
  return digest;
}

}  // namespace

absl::StatusOr<std::vector<ApiKeyDigest>> ParseApiKeys(std::string_view text) {
  std::vector<ApiKeyDigest> digests;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    for (char c : line) {
      if (c < 0x21 || c > 0x7e) {
        // The key itself is never part of a message.
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_number, ": a key must be printable ASCII without spaces"));
      }
    }
    digests.push_back(Digest(std::string_view(line.data(), line.size())));
  }
  return digests;
}

absl::StatusOr<size_t> ApiKeyStore::Load() {
  std::ifstream in(path_, std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!std::filesystem::is_regular_file(path_) || !in.is_open() || in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("--api-keys-file: cannot read ", path_));
  }
  auto digests = ParseApiKeys(text);
  if (!digests.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--api-keys-file ", path_, ", ", digests.status().message()));
  }
  std::unique_lock lock(mutex_);
  digests_ = std::move(*digests);
  return digests_.size();
}

bool ApiKeyStore::Accepts(std::string_view key) const {
  const ApiKeyDigest digest = Digest(key);
  std::shared_lock lock(mutex_);
  bool found = false;
  // Every key is compared, in constant time, so that the time taken says nothing about which.
  for (const ApiKeyDigest& held : digests_) {
    found |= CRYPTO_memcmp(held.data(), digest.data(), digest.size()) == 0;
  }
  return found;
}

}  // namespace kvserve
