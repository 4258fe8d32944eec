#include "args.h"

#include <cmath>
#include <sstream>

namespace dynamoe::cli {

std::string ParsedArgs::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t ParsedArgs::get_int(const std::string& name, int64_t fallback, int64_t min) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  try {
    size_t used = 0;
    const long long n = std::stoll(v, &used);
    if (used == v.size() && n >= min) return n;
  } catch (const std::exception&) {
  }
  throw UsageError(str("dynamoe ", command_, ": --", name, " expects an integer >= ", min, ", got '", v, "'"));
}

double ParsedArgs::get_double(const std::string& name, double fallback, double min, double max) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  try {
    size_t used = 0;
    const double x = std::stod(v, &used);
    if (used == v.size() && std::isfinite(x) && x >= min && x <= max) return x;
  } catch (const std::exception&) {
  }
  throw UsageError(str("dynamoe ", command_, ": --", name, " expects a number in [", min, ", ", max, "], got '", v, "'"));
}

ParsedArgs parse_args(const CommandSpec& spec, const std::vector<std::string>& args) {
  ParsedArgs out;
  out.command_ = spec.name;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {  // everything after it is an argument, even when it starts with a dash
      for (++i; i < args.size(); ++i) {
        if (out.positionals_.size() >= spec.max_positionals)
          throw UsageError(str("dynamoe ", spec.name, ": unexpected argument '", args[i], "' (see dynamoe ", spec.name,
                               " --help)"));
        out.positionals_.push_back(args[i]);
      }
      break;
    }
    if (a == "-h" || a == "--help") {
      out.help = true;
      continue;
    }
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      bool inline_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      const OptionSpec* opt = nullptr;
      for (const auto& o : spec.options)
        if (o.name == name) opt = &o;
      if (!opt) throw UsageError(str("dynamoe ", spec.name, ": unknown option '--", name, "' (see dynamoe ", spec.name, " --help)"));
      if (opt->metavar.empty()) {
        if (inline_value) throw UsageError(str("dynamoe ", spec.name, ": --", name, " takes no value"));
        out.values_[name].push_back("true");
      } else {
        if (!inline_value) {
          if (i + 1 >= args.size()) throw UsageError(str("dynamoe ", spec.name, ": --", name, " needs a value (", opt->metavar, ")"));
          value = args[++i];
        }
        if (!opt->repeatable && out.values_.count(name))
          throw UsageError(str("dynamoe ", spec.name, ": --", name, " given twice"));
        out.values_[name].push_back(value);
      }
      continue;
    }
    if (a.size() > 1 && a[0] == '-') throw UsageError(str("dynamoe ", spec.name, ": unknown option '", a, "'"));
    if (out.positionals_.size() >= spec.max_positionals)
      throw UsageError(str("dynamoe ", spec.name, ": unexpected argument '", a, "' (see dynamoe ", spec.name, " --help)"));
    out.positionals_.push_back(a);
  }
  return out;
}

std::string help_text(const CommandSpec& spec) {
  std::ostringstream os;
  os << "usage: " << spec.usage << "\n\n" << spec.summary << "\n";
  if (!spec.options.empty()) {
    os << "\noptions:\n";
    for (const auto& o : spec.options) {
      std::string left = "  --" + o.name + (o.metavar.empty() ? "" : " " + o.metavar);
      if (left.size() < 26) left.resize(26, ' ');
      else left += "\n" + std::string(26, ' ');
      os << left << o.help << (o.repeatable ? " (repeatable)" : "") << "\n";
    }
    os << "  --help                  show this help\n";
  }
  if (!spec.details.empty()) os << "\n" << spec.details << "\n";
  return os.str();
}

}  // namespace dynamoe::cli
