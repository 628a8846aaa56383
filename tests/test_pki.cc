#include "tests/test_pki.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace kvserve::testing {
namespace {

constexpr const char* kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc";

// A certificate for `name` (a file stem in the folder) signed by the CA of stem `ca`, with the
// X.509 extensions `extensions`; the commands as one shell line.
std::string SignedCertificate(const std::string& name, const std::string& ca,
                              const std::string& subject, const std::string& extensions,
                              int serial) {
  return "openssl req " + std::string(kNewKey) + " -keyout " + name + ".key -out " + name +
         ".csr -subj '" + subject + "' && printf '" + extensions + "' > " + name +
         ".ext && openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
         ".key -set_serial " + std::to_string(serial) + " -days 2 -out " + name + ".pem -extfile " +
         name + ".ext";
}

std::string SelfSignedCa(const std::string& name, const std::string& subject) {
  return "openssl req -x509 " + std::string(kNewKey) + " -keyout " + name + ".key -out " + name +
         ".pem -days 2 -subj '" + subject +
         "' -addext 'basicConstraints=critical,CA:TRUE' "
         "-addext 'keyUsage=critical,keyCertSign,cRLSign'";
}

}  // namespace

TestPki::TestPki() {
  char dir_template[] = "/tmp/kvserve-pki-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    error_ = "cannot make a temporary folder";
    return;
  }
  dir_ = dir_template;
  const std::string server_ext =
      "subjectAltName=IP:127.0.0.1,DNS:localhost\\n"
      "extendedKeyUsage=serverAuth\\n";
  const std::string client_ext = "extendedKeyUsage=clientAuth\\n";
  const std::vector<std::string> steps = {
      SelfSignedCa("ca", "/CN=kvserve test CA"),
      SignedCertificate("server", "ca", "/CN=localhost", server_ext, 2),
      SignedCertificate("client", "ca", "/CN=kvserve test client", client_ext, 3),
      SelfSignedCa("other-ca", "/CN=another CA"),
      SignedCertificate("other-client", "other-ca", "/CN=kvserve test client", client_ext, 4),
  };
  for (const std::string& step : steps) {
    const std::string command = "cd " + dir_ + " && (" + step + ") >> openssl.log 2>&1";
    if (std::system(command.c_str()) != 0) {
      error_ = "openssl failed: " + command + "\n" + ReadTextFile(dir_ + "/openssl.log");
      return;
    }
  }
}

TestPki::~TestPki() {
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace kvserve::testing
