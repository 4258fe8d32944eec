#include "dynamoe/bench/peer_process.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dynamoe/util/error.h"

extern char** environ;

namespace dynamoe::bench {

PeerProcess::PeerProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env)
    : name_(argv.empty() ? "" : argv.back()) {
  DYNAMOE_CHECK(!argv.empty(), "PeerProcess: empty command");
  std::signal(SIGPIPE, SIG_IGN);  // a dead peer is an error from write(), not a killed driver
  int in[2], out[2];
  DYNAMOE_CHECK(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0, "PeerProcess: pipe: ", std::strerror(errno));
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  envs.insert(envs.end(), env.begin(), env.end());
  pid_ = fork();
  DYNAMOE_CHECK(pid_ >= 0, "PeerProcess: fork: ", std::strerror(errno));
  if (pid_ == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    std::vector<char*> a, e;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    for (const auto& s : envs) e.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    e.push_back(nullptr);
    execve(a[0], a.data(), e.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  to_child_ = in[1];
  from_child_ = out[0];
  name_ = argv[0] + (argv.size() > 1 ? " " + argv[1] : std::string());
}

PeerProcess::~PeerProcess() {
  if (to_child_ >= 0) close(to_child_);  // EOF: the peer exits
  if (from_child_ >= 0) close(from_child_);
  if (pid_ > 0) {
    int status = 0;
    for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(100000);
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
}

std::string PeerProcess::read_line() {
  for (;;) {
    const auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    char chunk[65536];
    const ssize_t n = read(from_child_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(str("peer '", name_, "' exited without replying (see its stderr above)"));
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

nlohmann::json PeerProcess::call(const nlohmann::json& request) {
  const std::string line = request.dump() + "\n";
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = write(to_child_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(str("peer '", name_, "' is gone (writing '", request.value("cmd", "?"), "')"));
    done += static_cast<size_t>(n);
  }
  const std::string reply = read_line();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(reply);
  } catch (const std::exception&) {
    throw Error(str("peer '", name_, "' replied to '", request.value("cmd", "?"), "' with a line that is not JSON: ",
                    reply.substr(0, 200)));
  }
  if (j.contains("error"))
    throw Error(str("peer '", name_, "' failed '", request.value("cmd", "?"), "': ", j["error"].get<std::string>()));
  return j;
}

}  // namespace dynamoe::bench
