// The real kvserve binary as a child process on a free loopback port, for end-to-end tests. The
// destructor stops it if it is still running (SIGTERM, then SIGKILL after 15 s), so no test leaves
// a server behind, and fails the test if the server's log holds a sanitizer report (a leak is
// reported at a clean exit, which is why the stop is SIGTERM first).
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

  // Whether the log holds `text` at least `occurrences` times within `timeout`.
  bool WaitForLog(const std::string& text, int occurrences,
                  std::chrono::milliseconds timeout) const;
  // The port of /metrics from the server's start-up line; 0 if it has none (--metrics-port 0).
  int metrics_port() const;

  void Signal(int signal) const;
  // Waits for the process to exit; its exit code, or nullopt on timeout or a death by signal.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);

  // A loopback port that was free a moment ago (for --metrics-port, whose 0 means off).
  static int FreePort();

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
