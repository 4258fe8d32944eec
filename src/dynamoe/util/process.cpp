#include "dynamoe/util/process.h"

#include <sys/socket.h>

#include <netinet/in.h>

#include <arpa/inet.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string_view>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

extern char** environ;

namespace dynamoe {

namespace fs = std::filesystem;

void log_line(std::ostream* log, const std::string& line) {
  if (log) *log << line << std::endl;
}

std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  const std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t pos = 0;;) {
    const size_t colon = dirs.find(':', pos);
    std::string dir = dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (colon == std::string::npos) return "";
    pos = colon + 1;
  }
}

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::vector<std::pair<std::string, std::string>>& env, const std::string& scratch,
                          const std::string& cwd) {
  static std::atomic<int> counter{0};
  const std::string base = fs::absolute(fs::path(scratch) / ("cmd" + std::to_string(counter++))).string();
  const std::string out_path = base + ".out", err_path = base + ".err";

  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view kv(*e);
    const std::string_view key = kv.substr(0, kv.find('='));
    if (std::none_of(env.begin(), env.end(), [&](const auto& p) { return p.first == key; }))
      env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (std::string& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  ProcessResult r;
  std::string program = find_program(argv.at(0));
  if (program.empty()) {
    r.spawn_errno = ENOENT;
    return r;
  }
  program = fs::absolute(program).string();  // stays valid after a chdir to `cwd`
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());  // after the opens
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, program.c_str(), &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    r.spawn_errno = rc;
    return r;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      r.spawn_errno = errno;
      return r;
    }
  }
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  std::error_code ec;
  if (fs::exists(out_path, ec)) r.out = read_file(out_path);
  if (fs::exists(err_path, ec)) r.err = read_file(err_path);
  fs::remove(out_path, ec);
  fs::remove(err_path, ec);
  return r;
}

std::string process_error_reason(const std::string& err) {
  std::string last;
  for (size_t pos = 0; pos < err.size();) {
    size_t nl = err.find('\n', pos);
    if (nl == std::string::npos) nl = err.size();
    std::string line = err.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (const char* prefix : {"npm error ", "npm ERR! ", "npm error", "npm ERR!"}) {
      if (line.rfind(prefix, 0) == 0) {
        line = line.substr(std::strlen(prefix));
        break;
      }
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    last = line;
    if (line[0] == ' ' || line[0] == '\t' || line[0] == '}' || line[0] == '{') continue;
    if (line.rfind("code ", 0) == 0 || line.rfind("errno ", 0) == 0 || line.rfind("syscall ", 0) == 0 ||
        line.find("A complete log of this run") != std::string::npos)
      continue;
    return line;
  }
  return last.empty() ? "no error output" : last;
}

std::string exit_description(const std::string& program, const ProcessResult& r) {
  if (r.signal != 0) return str(program, " was killed by signal ", r.signal);
  return str(program, " exited ", r.exit_code);
}

std::string first_line(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_first_of("\r\n", a);
  return s.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

std::string last_line(const std::string& s) {
  const size_t b = s.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t a = s.find_last_of("\r\n", b);
  const size_t start = a == std::string::npos ? 0 : a + 1;
  return s.substr(start, b - start + 1);
}

std::string megabytes(uintmax_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), size = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? static_cast<double>(pages) * static_cast<double>(size) : 0.0;
}

std::string seconds_since(std::chrono::steady_clock::time_point t0) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return buf;
}

std::string make_temp_dir(const std::string& prefix) {
  std::error_code ec;
  const fs::path base = fs::temp_directory_path(ec);
  DYNAMOE_CHECK(!ec, "cannot find a temporary directory: ", ec.message());
  std::string tmpl = (base / (prefix + "XXXXXX")).string();
  DYNAMOE_CHECK(::mkdtemp(tmpl.data()) != nullptr, "cannot create a temporary directory in '",
                base.string(), "': ", std::strerror(errno));
  return tmpl;
}

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  DYNAMOE_CHECK(fd >= 0, "cannot open a socket: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int err = errno;
  ::close(fd);
  DYNAMOE_CHECK(ok, "cannot find a free TCP port on 127.0.0.1: ", std::strerror(err));
  return ntohs(addr.sin_port);
}

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  DYNAMOE_CHECK(n > 0, "cannot find this program's own path (/proc/self/exe): ", std::strerror(errno));
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace dynamoe
