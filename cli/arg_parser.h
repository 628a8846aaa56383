// Command-line options of one kvserve-cli subcommand: `--name value` or `--name=value`, booleans as
// bare `--name`. Each subcommand owns its parser, so their option names never clash.
#pragma once

#include <absl/status/status.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace kvserve {

class ArgParser {
 public:
  explicit ArgParser(std::string usage) : usage_(std::move(usage)) {}

  void AddString(const std::string& name, std::string* out, const std::string& help);
  void AddInt(const std::string& name, int64_t* out, const std::string& help);
  void AddDouble(const std::string& name, double* out, const std::string& help);
  void AddBool(const std::string& name, bool* out, const std::string& help);

  // Parses args (without the program and subcommand names). INVALID_ARGUMENT names the option for
  // an unknown option, a missing value or a malformed number. `--help` sets help_requested().
  absl::Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_requested_; }
  // The usage line and every option with its help and default.
  std::string Help() const;
  // After Parse (and any checks of the caller's own, folded into `status`): the exit code when the
  // command must stop here, printing the error and the help (0 after --help, 2 on a usage error),
  // or -1 to go on. `command` prefixes the error ("kvserve-cli score").
  int ExitCode(const absl::Status& status, const std::string& command) const;

 private:
  struct Option {
    std::string help;
    std::string default_text;
    bool is_bool = false;
    std::function<bool(const std::string&)> set;  // false: malformed value
  };
  void Add(const std::string& name, Option option);

  std::string usage_;
  std::map<std::string, Option> options_;
  std::vector<std::string> order_;
  bool help_requested_ = false;
};

// Prints "command: message" to stderr and returns 1, a runtime error's exit code.
int Fail(const std::string& command, const absl::Status& status);

}  // namespace kvserve
