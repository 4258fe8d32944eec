// Expert parallelism on loopback: P processes (tests/workers/expert_parallel_layer.cpp) each
// hold 1/P of a layer's experts and exchange rows by all-to-all; outputs, the auxiliary loss and
// every gradient equal the single-process layer on the concatenated batch in float64 within
// 1e-10 and in float32 within 1e-5 (relative), for top_k, top_p, dynamoe (with its training
// noise), tsallis_hybrid with DynMoLE's loss (products of batch means), expert_choice (each
// expert picks from the whole batch), the loop kernel,
// SwiGLU with a copy expert, capacity limits decided over the whole batch, and a batch in which
// one rank's experts receive no rows.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "dynamoe/dist/launch_env.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/process.h"
#include "test_util.h"

namespace {

/// Runs P workers; returns their exit codes and appends their output to `log`.
std::vector<int> run_workers(int P, const dynamoe::testutil::TempDir& tmp, std::string& log) {
  const int port = dynamoe::free_local_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < P; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      dynamoe::dist::set_local_launch_environment(r, P, port);
      const std::string out = tmp / ("rank" + std::to_string(r) + ".log");
      ::execl("/bin/sh", "sh", "-c", (std::string("exec ") + EXPERT_PARALLEL_WORKER + " >" + out + " 2>&1").c_str(),
              nullptr);
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    codes.push_back(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  for (int r = 0; r < P; ++r) log += dynamoe::read_file(tmp / ("rank" + std::to_string(r) + ".log"));
  return codes;
}

}  // namespace

class ExpertParallel : public ::testing::TestWithParam<int> {};

TEST_P(ExpertParallel, LayerEqualsOneProcessOnTheConcatenatedBatch) {
  dynamoe::testutil::TempDir tmp;
  std::string log;
  const std::vector<int> codes = run_workers(GetParam(), tmp, log);
  std::cout << log;
  for (size_t r = 0; r < codes.size(); ++r) EXPECT_EQ(codes[r], 0) << "rank " << r << "\n" << log;
  EXPECT_NE(log.find("an idle rank"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(Processes, ExpertParallel, ::testing::Values(2, 4));
