#pragma once
// dynamoe::Error and its kinds. The library throws; only the CLI decides exit codes.
#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>

namespace dynamoe {

namespace detail {
/// `msg` with its control characters written as escapes ("\\n", "\\t", "\\x01"): a message that
/// quotes the user's input (a key, a value, a YAML parser's complaint) stays one line.
inline std::string one_line(const std::string& msg) {
  auto is_control = [](unsigned char c) { return c < 0x20 || c == 0x7f; };
  if (std::none_of(msg.begin(), msg.end(), is_control)) return msg;
  std::string out;
  for (unsigned char c : msg) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (is_control(c)) {
      const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}
}  // namespace detail

/// A user-facing error: one line saying what is wrong and where (control characters quoted from
/// the input are escaped).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(detail::one_line(msg)) {}
};

/// A bad configuration value or key (CLI exit code 2, nothing written).
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& msg) : Error(msg) {}
};

namespace detail {
inline void str_into(std::ostringstream&) {}
template <typename T, typename... Rest>
void str_into(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  str_into(os, rest...);
}
}  // namespace detail

/// Concatenates its arguments with operator<<, like c10::str.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::str_into(os, args...);
  return os.str();
}

/// One number formatted with a printf format: fmt("%.2f", 0.125) == "0.13".
inline std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

}  // namespace dynamoe

/// Throws dynamoe::Error with the concatenated message when cond is false.
#define DYNAMOE_CHECK(cond, ...) \
  do {                           \
    if (!(cond)) throw ::dynamoe::Error(::dynamoe::str(__VA_ARGS__)); \
  } while (0)
