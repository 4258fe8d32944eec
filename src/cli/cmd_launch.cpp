// dynamoe launch: run a dynamoe command as N local processes of one distributed run, with the
// variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT). When a rank fails, the others get `--grace` seconds to notice and exit with
// their own message (they name the lost rank); then the launcher stops them.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <thread>

#include "commands.h"
#include "dynamoe/dist/launch_env.h"
#include "dynamoe/util/process.h"

namespace dynamoe::cli {
namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return str("was killed by signal ", sig, name ? str(" (SIG", name, ")") : "");
  }
  return str("exited with code ", WEXITSTATUS(status));
}

int exit_code_of(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

int run(const ParsedArgs& a) {
  if (!a.has("nproc")) throw UsageError("dynamoe launch: --nproc N is required (see dynamoe launch --help)");
  const int nproc = static_cast<int>(a.get_int("nproc", 1, 1));
  if (nproc > 256) throw UsageError(str("dynamoe launch: --nproc ", nproc, " is more than 256 local processes"));
  const double grace = a.get_double("grace", 30, 0, 86400);
  const std::vector<std::string>& cmd = a.positionals();
  if (cmd.empty())
    throw UsageError("dynamoe launch: no command to run; e.g. dynamoe launch --nproc 2 -- train --config FILE");
  if (cmd[0] != "train" && cmd[0] != "eval")
    throw UsageError(str("dynamoe launch: `", cmd[0], "` runs in one process; only `train` and `eval` run across processes"));
  const int port = a.has("master-port") ? static_cast<int>(a.get_int("master-port", 0, 1)) : free_local_port();
  if (port > 65535) throw UsageError(str("dynamoe launch: --master-port ", port, " is not a TCP port"));
  const std::string exe = self_executable();

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
  std::vector<int> status(static_cast<size_t>(nproc), -1);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(str("dynamoe launch: cannot start rank ", r, ": ", std::strerror(errno)));
    if (pid == 0) {
      dist::set_local_launch_environment(r, nproc, port);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(exe.c_str()));
      for (const std::string& s : cmd) argv.push_back(const_cast<char*>(s.c_str()));
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      std::fprintf(stderr, "dynamoe launch: cannot run %s: %s\n", exe.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  int running = nproc, first_failed = -1, forwarded = 0;
  Clock::time_point deadline{}, kill_at{};
  bool terminated = false;
  while (running > 0) {
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      for (int r = 0; r < nproc; ++r) {
        if (pids[static_cast<size_t>(r)] != pid) continue;
        status[static_cast<size_t>(r)] = st;
        --running;
        const bool failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (failed && first_failed < 0 && !g_signal) {
          first_failed = r;
          deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(grace * 1000));
          if (running > 0)
            std::cerr << "dynamoe launch: rank " << r << " " << how_it_ended(st) << "; the other ranks have "
                      << grace << " s to stop on their own\n";
        }
      }
      continue;
    }
    if (g_signal && g_signal != forwarded) {  // Ctrl-C or a TERM to the launcher: pass it on
      forwarded = g_signal;
      for (int r = 0; r < nproc; ++r)
        if (status[static_cast<size_t>(r)] == -1) ::kill(pids[static_cast<size_t>(r)], forwarded);
    }
    const Clock::time_point now = Clock::now();
    if (first_failed >= 0 && !terminated && now >= deadline) {
      std::string left;
      for (int r = 0; r < nproc; ++r)
        if (status[static_cast<size_t>(r)] == -1) {
          left += (left.empty() ? "" : ", ") + std::to_string(r);
          ::kill(pids[static_cast<size_t>(r)], SIGTERM);
        }
      std::cerr << "dynamoe launch: stopping rank(s) " << left << ", still running " << grace << " s after rank "
                << first_failed << " failed\n";
      terminated = true;
      kill_at = now + std::chrono::seconds(5);
    }
    if (terminated && now >= kill_at) {
      for (int r = 0; r < nproc; ++r)
        if (status[static_cast<size_t>(r)] == -1) ::kill(pids[static_cast<size_t>(r)], SIGKILL);
      kill_at = now + std::chrono::hours(24);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (first_failed >= 0) return exit_code_of(status[static_cast<size_t>(first_failed)]);
  for (int st : status)
    if (exit_code_of(st) != 0) return exit_code_of(st);
  return 0;
}

}  // namespace

Command launch_command() {
  return {{"launch",
           "run `train` or `eval` as several processes of one distributed run",
           "dynamoe launch --nproc N [--master-port PORT] [--grace S] -- train|eval [options]",
           "Starts N processes of this dynamoe on this machine with the variables torchrun sets\n"
           "(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT).\n"
           "Each takes a disjoint part of every batch (and its share of the experts under\n"
           "moe.expert_parallel); rank 0 alone writes the run folder and prints results. Across\n"
           "machines, start `dynamoe train` (or eval) once per machine with those variables set by your\n"
           "scheduler. If a rank fails, the others stop within dist.timeout_s + 10 s naming it;\n"
           "the launcher exits with the failed rank's code. See docs/distributed.md.",
           {{"nproc", "N", "processes to start"},
            {"master-port", "PORT", "rendezvous port on 127.0.0.1 (default: a free one)"},
            {"grace", "S", "seconds the other ranks get to stop on their own after one fails (default 30)"}},
           64},
          run};
}

}  // namespace dynamoe::cli
