#include "cli/arg_parser.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

#include <iostream>
#include <sstream>

namespace kvserve {

void ArgParser::Add(const std::string& name, Option option) {
  order_.push_back(name);
  options_[name] = std::move(option);
}

void ArgParser::AddString(const std::string& name, std::string* out, const std::string& help) {
  Add(name, {help, *out, false, [out](const std::string& v) {
               *out = v;
               return true;
             }});
}

void ArgParser::AddInt(const std::string& name, int64_t* out, const std::string& help) {
  Add(name, {help, std::to_string(*out), false,
             [out](const std::string& v) { return absl::SimpleAtoi(v, out); }});
}

void ArgParser::AddDouble(const std::string& name, double* out, const std::string& help) {
  std::ostringstream text;
  text << *out;
  Add(name,
      {help, text.str(), false, [out](const std::string& v) { return absl::SimpleAtod(v, out); }});
}

void ArgParser::AddBool(const std::string& name, bool* out, const std::string& help) {
  Add(name, {help, *out ? "true" : "false", true, [out](const std::string& v) {
               if (v == "true" || v == "1") return *out = true, true;
               if (v == "false" || v == "0") return *out = false, true;
               return false;
             }});
}

absl::Status ArgParser::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2), value;
    const size_t equals = name.find('=');
    const bool inline_value = equals != std::string::npos;
    if (inline_value) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    }
    auto it = options_.find(name);
    if (it == options_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option --", name, " (see --help)"));
    }
    if (!inline_value) {
      if (it->second.is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("option --", name, " needs a value"));
      }
    }
    if (!it->second.set(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("option --", name, ": cannot read '", value, "'"));
    }
  }
  return absl::OkStatus();
}

std::string ArgParser::Help() const {
  std::string text = absl::StrCat("usage: ", usage_, "\n\noptions:\n");
  for (const auto& name : order_) {
    const Option& o = options_.at(name);
    absl::StrAppend(&text, "  --", name, "\n      ", o.help,
                    " (default: ", o.default_text.empty() ? "\"\"" : o.default_text, ")\n");
  }
  return text;
}

int ArgParser::ExitCode(const absl::Status& status, const std::string& command) const {
  if (status.ok() && !help_requested_) return -1;
  if (!status.ok()) std::cerr << command << ": " << status.message() << "\n\n";
  std::cerr << Help();
  return status.ok() ? 0 : 2;
}

int Fail(const std::string& command, const absl::Status& status) {
  std::cerr << command << ": " << status.message() << "\n";
  return 1;
}

}  // namespace kvserve
