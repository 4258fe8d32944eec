#pragma once
// dynamoe::Error and its kinds. The library throws; only the CLI decides exit codes.
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>

namespace dynamoe {

/// A user-facing error: one line saying what is wrong and where.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
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
