// Certificates made for a test by the openssl command line, in a fresh temporary folder that the
// destructor removes: a CA, a server certificate it signed for 127.0.0.1 and localhost, a client
// certificate it signed, and a client certificate signed by another CA (EC P-256 keys, valid two
// days).
#pragma once

#include <string>

namespace kvserve::testing {

class TestPki {
 public:
  TestPki();  // see ok()
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  // Whether every certificate was made; error() says why not (e.g. no openssl).
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // PEM files.
  std::string ca_cert() const { return dir_ + "/ca.pem"; }
  std::string server_cert() const { return dir_ + "/server.pem"; }
  std::string server_key() const { return dir_ + "/server.key"; }
  std::string client_cert() const { return dir_ + "/client.pem"; }
  std::string client_key() const { return dir_ + "/client.key"; }
  std::string other_ca_cert() const { return dir_ + "/other-ca.pem"; }
  std::string other_client_cert() const { return dir_ + "/other-client.pem"; }
  std::string other_client_key() const { return dir_ + "/other-client.key"; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::string error_;
};

// The whole contents of a file; empty if it cannot be read.
std::string ReadTextFile(const std::string& path);

}  // namespace kvserve::testing
