#include "tests/e2e/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/test_support.h"

namespace kvserve::testing {

ServerProcess::ServerProcess(std::vector<std::string> args) {
  char log_template[] = "/tmp/kvserve-e2e-XXXXXX";
  const int log_fd = mkostemp(log_template, O_CLOEXEC);
  log_path_ = log_template;
  int out[2];
  if (log_fd < 0 || pipe2(out, O_CLOEXEC) != 0) return;

  std::vector<std::string> argv = {KVSERVE_SERVER_BINARY, "--port=0", "--metrics_port=0",
                                   "--host=127.0.0.1", "--model=" + Stories260kDir()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = fork();
  if (pid_ == 0) {
    // A test that dies without its destructors (a crash, SIGPIPE) takes the server along. (The
    // signal follows the thread that forked: servers start on the test's own thread.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(out[1], STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close(out[0]);
    std::vector<char*> raw;
    for (std::string& a : argv) raw.push_back(a.data());
    raw.push_back(nullptr);
    execv(raw[0], raw.data());
    _exit(127);
  }
  close(out[1]);
  close(log_fd);

  // Read stdout until the "listening on" line, for at most 60 s.
  std::string seen;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < give_up) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buffer[256];
    const ssize_t n = read(out[0], buffer, sizeof(buffer));
    if (n <= 0) break;  // the server exited
    seen.append(buffer, static_cast<size_t>(n));
    const size_t at = seen.find("listening on ");
    const size_t end = at == std::string::npos ? at : seen.find('\n', at);
    if (end != std::string::npos) {
      address_ = seen.substr(at + 13, end - at - 13);
      break;
    }
  }
  {
    std::lock_guard lock(mutex_);
    stdout_ = seen;
  }
  stdout_fd_ = out[0];
  stdout_reader_ = std::thread([this] {
    char buffer[4096];
    ssize_t n = 0;
    while ((n = read(stdout_fd_, buffer, sizeof(buffer))) > 0) {
      std::lock_guard lock(mutex_);
      stdout_.append(buffer, static_cast<size_t>(n));
    }
  });
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGTERM);
    WaitForExit(std::chrono::seconds(15));
    if (!exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  if (stdout_reader_.joinable()) stdout_reader_.join();  // EOF once the process is gone
  if (stdout_fd_ >= 0) close(stdout_fd_);
  const std::string text = log();
  for (const char* report : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
    if (text.find(report) != std::string::npos) ADD_FAILURE() << "sanitizer report:\n" << text;
  }
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

bool ServerProcess::WaitForLog(const std::string& text, int occurrences,
                               std::chrono::milliseconds timeout) const {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const std::string all = log();
    int found = 0;
    for (size_t at = all.find(text); at != std::string::npos; at = all.find(text, at + 1)) ++found;
    if (found >= occurrences) return true;
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int ServerProcess::metrics_port() const {
  const std::string all = log();
  const size_t at = all.find("/metrics\n");
  const size_t colon = at == std::string::npos ? at : all.rfind(':', at);
  return colon == std::string::npos ? 0 : std::atoi(all.c_str() + colon + 1);
}

int ServerProcess::FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

std::string ServerProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream text;
  text << in.rdbuf();
  std::lock_guard lock(mutex_);
  return stdout_ + text.str();
}

void ServerProcess::Signal(int signal) const {
  if (pid_ > 0 && !exited_) kill(pid_, signal);
}

std::optional<int> ServerProcess::WaitForExit(std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < give_up) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

}  // namespace kvserve::testing
