#pragma once
// The progress lines of the fetchers (dynamoe data fetch): a line to an optional log, and the
// seconds since a start as "12.3 s".
#include <chrono>
#include <cstdio>
#include <ostream>
#include <string>

namespace dynamoe::data {

inline void log_line(std::ostream* log, const std::string& line) {
  if (log) *log << line << std::endl;
}

inline std::string seconds_since(std::chrono::steady_clock::time_point t0) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

}  // namespace dynamoe::data
