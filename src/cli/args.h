#pragma once
// A small command-line parser for `dynamoe <command> [options]`: --name value, --name=value,
// repeatable options, positionals, and generated --help text.
#include <map>
#include <string>
#include <vector>

#include "dynamoe/util/error.h"

namespace dynamoe::cli {

/// A usage mistake (exit code 2).
class UsageError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

struct OptionSpec {
  std::string name;       ///< without dashes, e.g. "config"
  std::string metavar;    ///< "" for a flag
  std::string help;
  bool repeatable = false;
};

struct CommandSpec {
  std::string name;                    ///< e.g. "train"
  std::string summary;                 ///< one line for `dynamoe --help`
  std::string usage;                   ///< e.g. "dynamoe train --config FILE [options]"
  std::string details;                 ///< paragraphs after the options
  std::vector<OptionSpec> options;
  size_t max_positionals = 0;
};

class ParsedArgs {
 public:
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> all(const std::string& name) const;
  /// The integer value of --name (fallback when absent); a UsageError unless it is an integer >= min.
  int64_t get_int(const std::string& name, int64_t fallback, int64_t min) const;
  /// The number value of --name (fallback when absent); a UsageError unless it is a finite
  /// number in [min, max].
  double get_double(const std::string& name, double fallback, double min, double max) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  bool help = false;

 private:
  std::string command_;
  friend ParsedArgs parse_args(const CommandSpec&, const std::vector<std::string>&);
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
};

/// Parses args (after the command word); unknown options and missing values are UsageErrors.
ParsedArgs parse_args(const CommandSpec& spec, const std::vector<std::string>& args);
/// The --help text of a command.
std::string help_text(const CommandSpec& spec);

}  // namespace dynamoe::cli
