#pragma once
// Running external programs (npm, tar, apt-get, dpkg-deb) for the fetch commands: spawn with
// captured output, the one line of a failed command's stderr worth showing, temp folders and
// progress formatting. Used by data::NpmPackage and data::DebianPackage.
//
// Usage:
//   const std::string tmp = dynamoe::make_temp_dir("dynamoe-x-");
//   dynamoe::ProcessResult r = dynamoe::run_process({"tar", "-xzf", "a.tgz", "-C", tmp}, {}, tmp);
//   if (r.spawn_errno) ...;  if (r.exit_code != 0) throw Error(exit_description("tar", r) + ": " +
//                                                                process_error_reason(r.err));
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace dynamoe {

/// What a finished (or unstartable) command did.
struct ProcessResult {
  /// Non-zero when the program could not be started (ENOENT: not on $PATH).
  int spawn_errno = 0;
  /// Exit status, or -1 when killed by a signal.
  int exit_code = -1;
  /// The signal that killed it, or 0.
  int signal = 0;
  /// Captured stdout and stderr.
  std::string out, err;
};

/// The executable `name` resolves to on $PATH (or `name` itself when it holds a '/'), or "".
std::string find_program(const std::string& name);

/// Runs argv (argv[0] looked up on $PATH) with stdin from /dev/null and stdout/stderr captured
/// in files under the existing folder `scratch`; `env` entries override or add to the inherited
/// environment; `cwd` (if not empty) is its working directory. Waits for it to finish.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::vector<std::pair<std::string, std::string>>& env, const std::string& scratch,
                          const std::string& cwd = "");

/// The most informative line of a failed command's stderr: the first line that is not blank,
/// not indented, not a bare "code/errno/syscall X" field, without npm's "npm error " prefix;
/// else the last non-empty line; "no error output" when there is none.
std::string process_error_reason(const std::string& err);

/// "<program> exited <code>" or "<program> was killed by signal <n>".
std::string exit_description(const std::string& program, const ProcessResult& r);

/// Creates a fresh folder "<$TMPDIR or /tmp>/<prefix>XXXXXX" (mode 0700) and returns its path.
std::string make_temp_dir(const std::string& prefix);

/// The first / last non-blank line of `s`, trimmed ("" when there is none).
std::string first_line(const std::string& s);
std::string last_line(const std::string& s);

/// "12.3 MB" (decimal megabytes, one decimal).
std::string megabytes(uintmax_t bytes);

/// "1.2 s": the time since t0, one decimal.
std::string seconds_since(std::chrono::steady_clock::time_point t0);

/// A TCP port on 127.0.0.1 that was free a moment ago (for a local rendezvous).
int free_local_port();

/// This machine's physical memory in bytes (0 when unknown).
double physical_memory_bytes();

/// The path of this program (/proc/self/exe), to start more of it.
std::string self_executable();

/// Writes `line` and a newline to `log` and flushes; nothing when log is nullptr.
void log_line(std::ostream* log, const std::string& line);

}  // namespace dynamoe
