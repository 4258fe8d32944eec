#include "dynamoe/dist/launch_env.h"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include "dynamoe/util/error.h"

namespace dynamoe::dist {
namespace {

/// The integer value of variable `name` (or `fallback` when unset), within [lo, hi].
int int_var(const char* name, int fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  errno = 0;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (errno != 0 || *end != '\0' || x < lo || x > hi)
    throw ConfigError(str("environment variable ", name, "='", v, "' is not an integer in [", lo, ", ", hi, "]"));
  return static_cast<int>(x);
}

}  // namespace

LaunchEnv launch_env_from_environment() {
  LaunchEnv e;
  e.world = int_var("WORLD_SIZE", 1, 1, 65536);
  e.rank = int_var("RANK", 0, 0, 65535);
  if (e.rank >= e.world)
    throw ConfigError(str("environment variable RANK=", e.rank, " is not below WORLD_SIZE=", e.world));
  e.local_world = int_var("LOCAL_WORLD_SIZE", e.world, 1, 65536);
  e.local_rank = int_var("LOCAL_RANK", e.rank % e.local_world, 0, 65535);
  if (e.local_rank >= e.local_world)
    throw ConfigError(str("environment variable LOCAL_RANK=", e.local_rank, " is not below LOCAL_WORLD_SIZE=",
                          e.local_world));
  if (!e.distributed()) return e;
  const char* addr = std::getenv("MASTER_ADDR");
  if (!addr || !*addr)
    throw ConfigError(str("WORLD_SIZE=", e.world, " but MASTER_ADDR is not set (the host of rank 0; "
                          "`dynamoe launch` sets it)"));
  e.master_addr = addr;
  e.master_port = int_var("MASTER_PORT", 0, 1, 65535);
  if (e.master_port == 0)
    throw ConfigError(str("WORLD_SIZE=", e.world, " but MASTER_PORT is not set (a free TCP port on MASTER_ADDR)"));
  return e;
}

void set_local_launch_environment(int rank, int world, int port) {
  ::setenv("RANK", std::to_string(rank).c_str(), 1);
  ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", std::to_string(world).c_str(), 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
}

std::string rank_prefix() {
  try {
    const LaunchEnv e = launch_env_from_environment();
    return e.distributed() ? str("rank ", e.rank, ": ") : "";
  } catch (const Error&) {
    return "";
  }
}

}  // namespace dynamoe::dist
