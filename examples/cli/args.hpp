// cli_args.hpp: the engram CLI's argument parsing: positional arguments and `--name value` /
// `--flag` options, with usage errors (exit status 2) kept apart from input errors (status 1).
#pragma once

#include <charconv>
#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace engram::cli {

/// A command-line usage error: the CLI prints it with the command's usage and exits with 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Parsed arguments of one subcommand.
class Args {
 public:
  /// Parses argv[first..argc). `value_options` take a value, `flag_options` do not; anything else
  /// starting with "--" (or "-o") is a usage error.
  Args(int argc, char** argv, int first, std::set<std::string> value_options,
       std::set<std::string> flag_options) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-o") a = "--output";
      if (a.rfind("--", 0) == 0 && a.size() > 2) {
        if (const auto eq = a.find('='); eq != std::string::npos) {
          set_value(a.substr(2, eq - 2), a.substr(eq + 1), value_options);
        } else if (flag_options.count(a.substr(2))) {
          flags_.insert(a.substr(2));
        } else if (value_options.count(a.substr(2))) {
          if (i + 1 >= argc) throw UsageError("option " + a + " needs a value");
          set_value(a.substr(2), argv[++i], value_options);
        } else {
          throw UsageError("unknown option " + a);
        }
      } else {
        positional_.push_back(a);
      }
    }
  }

  const std::vector<std::string>& positional() const { return positional_; }
  /// A usage error naming the first positional argument, for commands that take none.
  void expect_no_positional() const {
    if (!positional_.empty()) throw UsageError("unexpected argument " + positional_.front());
  }
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }

  /// The value of a required option.
  const std::string& str(const std::string& name) const {
    const auto it = values_.find(name);
    if (it == values_.end()) throw UsageError("missing required option --" + name);
    return it->second;
  }
  std::string str(const std::string& name, const std::string& fallback) const {
    return has(name) ? str(name) : fallback;
  }

  /// An integer option in [lo, hi].
  int64_t integer(const std::string& name, int64_t fallback, int64_t lo = INT64_MIN,
                  int64_t hi = INT64_MAX) const {
    if (!has(name)) return fallback;
    const std::string& s = str(name);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size())
      throw UsageError("option --" + name + " expects an integer, got '" + s + "'");
    if (v < lo || v > hi)
      throw UsageError("option --" + name + " must be in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "], got " + s);
    return v;
  }

 private:
  void set_value(const std::string& name, const std::string& value,
                 const std::set<std::string>& value_options) {
    if (!value_options.count(name)) throw UsageError("unknown option --" + name);
    if (values_.count(name)) throw UsageError("option --" + name + " given twice");
    values_[name] = value;
  }

  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
};

}  // namespace engram::cli
