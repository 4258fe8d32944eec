#pragma once
// Where this process sits in a multi-process run, read from the variables torchrun and
// `dynamoe launch` set: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
// With WORLD_SIZE unset (or 1) the process runs alone. A bad value is a one-line error naming
// the variable and the value.
//   dist::LaunchEnv env = dist::launch_env_from_environment();
//   if (env.world > 1) ... join the group at env.master_addr:env.master_port as env.rank
#include <cstdint>
#include <string>

namespace dynamoe::dist {

struct LaunchEnv {
  int rank = 0;             ///< RANK: this process, 0 .. world - 1
  int world = 1;            ///< WORLD_SIZE: processes in the run
  int local_rank = 0;       ///< LOCAL_RANK: this process among those on its machine
  int local_world = 1;      ///< LOCAL_WORLD_SIZE: processes on this machine (their cores are shared)
  std::string master_addr;  ///< MASTER_ADDR: host of rank 0 (the rendezvous store)
  int master_port = 0;      ///< MASTER_PORT
  bool distributed() const { return world > 1; }
};

/// Reads the variables above; throws ConfigError on a malformed or inconsistent value.
LaunchEnv launch_env_from_environment();

/// Sets the variables above for rank `rank` of `world` processes on this machine, meeting at
/// 127.0.0.1:`port` (in a child process, before exec).
void set_local_launch_environment(int rank, int world, int port);

/// "rank 1: " in a run of more than one process, else "" (prefix for messages).
std::string rank_prefix();

}  // namespace dynamoe::dist
