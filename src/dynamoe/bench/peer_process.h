#pragma once
// PeerProcess: a child process spoken to in JSON lines over its stdin/stdout, e.g. the PyTorch
// benchmark peer. One request, one reply; the child's stderr passes through.
//   PeerProcess py({"/usr/bin/python3", "bench/peers.py", "--threads", "2"});
//   nlohmann::json r = py.call({{"cmd", "hello"}});   // throws if the reply holds "error"
#include <nlohmann/json.hpp>

#include <string>
#include <sys/types.h>
#include <vector>

namespace dynamoe::bench {

class PeerProcess {
 public:
  /// Starts argv[0] with the arguments argv[1..] and extra environment "KEY=VALUE" entries.
  explicit PeerProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});
  ~PeerProcess();
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;
  /// Sends one request and waits for its reply; a reply with "error", a dead child or a
  /// malformed line is a dynamoe::Error naming the command.
  nlohmann::json call(const nlohmann::json& request);

 private:
  std::string read_line();
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  std::string buffer_, name_;
};

}  // namespace dynamoe::bench
