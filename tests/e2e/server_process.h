// The real kvserve binary as a child process on a free loopback port, for end-to-end tests. The
// destructor kills it (SIGKILL) if it is still running, so no test leaves a server behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace kvserve::testing {

class ServerProcess {
 public:
  // Starts kvserve with `args` plus --port 0 and the stories260K model, and waits (at most 60 s)
  // for its "listening on HOST:PORT" line. On failure address() is empty and log() says why.
  explicit ServerProcess(std::vector<std::string> args);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool started() const { return !address_.empty(); }
  const std::string& address() const { return address_; }  // "127.0.0.1:PORT"
  // Everything the server wrote (stdout and stderr) so far.
  std::string log() const;

  void Signal(int signal) const;
  // Waits for the process to exit; its exit code, or nullopt on timeout or a death by signal.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string address_;
  std::string log_path_;
  int stdout_fd_ = -1;
  std::thread stdout_reader_;  // keeps draining stdout after the first line
  mutable std::mutex mutex_;
  std::string stdout_;  // guarded by mutex_
};

}  // namespace kvserve::testing
