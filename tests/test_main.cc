// The test binaries' main: GoogleTest, plus a backtrace on a crash (a segfault in a child of ctest
// otherwise says nothing about where it happened).
#include <execinfo.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>

namespace {

void PrintBacktrace(int signal) {
  void* frames[64];
  const int count = backtrace(frames, 64);
  const char header[] = "\n*** fatal signal; backtrace:\n";
  (void)!write(STDERR_FILENO, header, sizeof(header) - 1);
  backtrace_symbols_fd(frames, count, STDERR_FILENO);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

}  // namespace

int main(int argc, char** argv) {
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(signal, PrintBacktrace);
  // A client whose TLS peer hangs up mid-write (OpenSSL writes with write(2)) gets EPIPE, not
  // death.
  std::signal(SIGPIPE, SIG_IGN);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
