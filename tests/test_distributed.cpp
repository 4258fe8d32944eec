// Several processes on loopback (c10d/Gloo) through `dynamoe launch`: data-parallel training
// equals one process on the same global batch (even and uneven shards), a killed or hung rank
// stops the others within dist.timeout_s + 10 s with a message naming it, and a resume after
// the kill, or after a stop signal (which checkpoints the step reached), ends bitwise identical
// to an uninterrupted run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include <ATen/ATen.h>

#include "dynamoe/dist/launch_env.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

using namespace dynamoe;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

/// The demo model at full size on 28x28 synthetic images, 50 steps of 128.
std::string demo_args(const testutil::TempDir& tmp, const std::string& name, const std::string& extra = "") {
  return " train --plain --config " + testutil::source_dir() + "/configs/demo.yaml --name " + name +
         " --set data.dataset=idx --set data.path=" + (tmp / "data") + " --set train.runs_dir=" + (tmp / "runs") +
         " --set train.steps=50 --set train.eval_every=50 --set train.warmup_steps=10 " +
         (extra.find("train.threads") == std::string::npos ? "--set train.threads=1 " : "") + extra;
}

std::string launch(int nproc, const std::string& extra = "") {
  return testutil::cli() + " launch --nproc " + std::to_string(nproc) + " " + extra + " --";
}

/// The pid of the child of `parent` whose environment holds RANK=<rank>, or -1.
pid_t child_with_rank(pid_t parent, int rank) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string comm_and_rest, field;
    std::getline(stat, comm_and_rest);
    const size_t close = comm_and_rest.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(comm_and_rest.substr(close + 2));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid != parent) continue;
    std::ifstream env(entry.path() / "environ");
    std::string var;
    while (std::getline(env, var, '\0'))
      if (var == "RANK=" + std::to_string(rank)) return static_cast<pid_t>(std::stol(pid));
  }
  return -1;
}

/// A command started in the background with its output in a file.
struct Background {
  pid_t pid = -1;
  std::string log;
  Background(const std::string& cmd, const std::string& log_path) : log(log_path) {
    pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >" + log_path + " 2>&1").c_str(), nullptr);
      ::_exit(127);
    }
  }
  /// Waits for the exit; returns the exit code (128 + signal when killed).
  int wait() {
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  ~Background() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

bool wait_for(const std::function<bool()>& cond, double seconds) {
  const auto end = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (Clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

/// A small fast model for the fault tests: 400 steps of 32, a checkpoint every 20.
std::string fault_args(const testutil::TempDir& tmp, const std::string& name) {
  return " train --plain --config " + testutil::source_dir() + "/configs/demo.yaml --name " + name +
         " --set data.dataset=idx --set data.path=" + (tmp / "data") + " --set train.runs_dir=" + (tmp / "runs") +
         " --set model.d_model=32 --set moe.experts.hidden=32 --set train.batch_size=32 --set train.steps=400"
         " --set train.eval_every=200 --set train.checkpoint_every=20 --set train.keep_checkpoints=100"
         " --set train.threads=1 --set dist.timeout_s=10";
}

/// Starts `prefix` + fault_args(name) in the background, sends `sig` once its step-20
/// checkpoint exists, and expects a stop after a later step with that step's checkpoint, then
/// a resume that ends bitwise where tmp/runs/whole ended.
void expect_stop_and_exact_resume(const testutil::TempDir& tmp, const std::string& prefix, const std::string& name,
                                  int sig) {
  Background run(prefix + fault_args(tmp, name), tmp / (name + ".log"));
  ASSERT_TRUE(wait_for([&] { return fs::exists(tmp / ("runs/" + name + "/checkpoints/step_00000020")); }, 120))
      << read_file(run.log);
  ::kill(run.pid, sig);
  const int code = run.wait();
  const std::string log = read_file(run.log);
  EXPECT_EQ(code, 128 + sig) << log;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex("stopped by SIG[A-Z]+ after step ([0-9]+) of 400; its checkpoint is "
                                                   "written: continue with `dynamoe train --resume ")))
      << log;
  char step_dir[32];
  std::snprintf(step_dir, sizeof(step_dir), "step_%08d", std::stoi(m[1]));
  EXPECT_TRUE(fs::exists(tmp / ("runs/" + name + "/checkpoints/" + step_dir))) << log;
  auto resumed = testutil::run_command(prefix + " train --plain --resume " + (tmp / ("runs/" + name)));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find(str("from step ", m[1].str())), std::string::npos) << resumed.output;
  const io::SafetensorsFile a = testutil::final_weights(tmp / "runs/whole");
  const io::SafetensorsFile b = testutil::final_weights(tmp / ("runs/" + name));
  for (const auto& [tensor, t] : a.tensors) EXPECT_TRUE(at::equal(t, b.at(tensor))) << tensor;
}

}  // namespace

TEST(Distributed, LaunchEnvironmentIsCheckedVariableByVariable) {
  {
    testutil::ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "2");
    testutil::expect_error([] { dist::launch_env_from_environment(); }, {"RANK=2", "WORLD_SIZE=2"});
  }
  {
    testutil::ScopedEnv w("WORLD_SIZE", "two");
    testutil::expect_error([] { dist::launch_env_from_environment(); }, {"WORLD_SIZE='two'"});
  }
  {
    testutil::ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "1"), a("MASTER_ADDR", "127.0.0.1");
    ::unsetenv("MASTER_PORT");
    testutil::expect_error([] { dist::launch_env_from_environment(); }, {"MASTER_PORT"});
  }
  testutil::ScopedEnv w("WORLD_SIZE", "1");
  EXPECT_FALSE(dist::launch_env_from_environment().distributed());
}

TEST(Distributed, LaunchRunsOnlyTrainOrEvalAndNeedsACommand) {
  auto r = testutil::run_command(launch(2) + " generate --checkpoint x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("only `train` and `eval` run across processes"), std::string::npos) << r.output;
  r = testutil::run_command(testutil::cli() + " launch --nproc 2");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no command to run"), std::string::npos) << r.output;
}

// Data parallel: 50 steps of the demo model (DynaMoE routing with its training noise, load
// balance and z-loss, AdamW, clipping) on 2 and on 3 processes (shards of 64/64 and
// 42/43/43 rows, and a last batch of 104 per epoch) end where one process ends.
TEST(Distributed, DataParallelTrainingEqualsOneProcess) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 1000, 100, 28);
  auto one = testutil::run_command(testutil::cli() + demo_args(tmp, "one"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const io::SafetensorsFile reference = testutil::final_weights(tmp / "runs/one");
  // The floor: one process with 2 threads instead of 1 (another summation order).
  auto two_threads = testutil::run_command(testutil::cli() + demo_args(tmp, "one-t2", "--set train.threads=2"));
  ASSERT_EQ(two_threads.exit_code, 0) << two_threads.output;
  std::string worst_floor;
  std::cout << "[ dp ] one process, 2 threads against 1: largest relative weight difference "
            << testutil::max_relative_difference(reference, testutil::final_weights(tmp / "runs/one-t2"), &worst_floor) << " ("
            << worst_floor << ")\n";
  for (int nproc : {2, 3}) {
    const std::string name = "dp" + std::to_string(nproc);
    auto r = testutil::run_command(launch(nproc) + demo_args(tmp, name));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("data parallel: " + std::to_string(nproc) + " processes"), std::string::npos) << r.output;
    std::string worst;
    const double d = testutil::max_relative_difference(reference, testutil::final_weights(tmp / ("runs/" + name)), &worst);
    std::cout << "[ dp ] " << nproc << " processes: largest relative weight difference " << d << " (" << worst
              << ")\n";
    EXPECT_LT(d, 1e-5) << worst;
    // Only rank 0 wrote: one metrics file whose last train loss matches the single process's.
    auto last_loss = [](const std::string& run) {
      double loss = 0;
      std::istringstream lines(read_file(run + "/metrics.jsonl"));
      for (std::string line; std::getline(lines, line);) {
        auto row = nlohmann::json::parse(line);
        if (row["split"] == "train") loss = row["loss"].get<double>();
      }
      return loss;
    };
    EXPECT_NEAR(last_loss(tmp / ("runs/" + name)), last_loss(tmp / "runs/one"), 1e-4);
  }
}

// The dynamic-k controllers (docs/methods.md section 9) see the whole batch: with 2 processes
// the router states (tbar, P and I, lambda: buffers in the checkpoint) and the weights end where
// one process ends.
TEST(Distributed, DataParallelControllersEqualOneProcess) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 600, 100, 28);
  const std::pair<const char*, const char*> routers[] = {
      {"dynamoe_batch", "--set moe.router.kind=dynamoe --set moe.router.scope=batch --set moe.router.momentum=0.2"},
      {"dtop_p", "--set moe.router.kind=dtop_p --set moe.router.target_k=1.5"},
      {"relu", "--set moe.router.kind=relu --set moe.router.balance=true --set moe.router.lambda0=0.001"}};
  for (const auto& [name, sets] : routers) {
    const std::string one = std::string(name) + "-one", two = std::string(name) + "-dp2";
    auto r = testutil::run_command(testutil::cli() + demo_args(tmp, one, std::string("--set train.steps=30 ") + sets));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = testutil::run_command(launch(2) + demo_args(tmp, two, std::string("--set train.steps=30 ") + sets));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const io::SafetensorsFile a = testutil::final_weights(tmp / ("runs/" + one)),
                              b = testutil::final_weights(tmp / ("runs/" + two));
    int states = 0, moved = 0;
    for (const auto& [tensor, t] : a.tensors) {
      if (tensor.find(".router.") == std::string::npos) continue;
      ++states;
      // Initial values: P 0.5, I 0, lambda 0.001, tbar 1/E for the demo's E in {8, 6, 4, 2}.
      const double v = t.item<double>();
      bool initial = false;
      for (double init : {0.5, 0.0, 0.001, 0.125, 1.0 / 6, 0.25})
        initial = initial || std::abs(v - init) < 1e-7;
      moved += !initial;
      EXPECT_NEAR(t.item<double>(), b.at(tensor).item<double>(), 1e-6 * std::max(1.0, std::abs(t.item<double>())))
          << name << " " << tensor;
    }
    EXPECT_GE(states, 4) << name << ": a controller state per MoE layer in the checkpoint";
    EXPECT_GE(moved, 1) << name << ": 30 steps moved no controller";
    std::string worst;
    const double d = testutil::max_relative_difference(a, b, &worst);
    std::cout << "[ dp ] " << name << ", 2 processes: largest relative weight difference " << d << " (" << worst << ")\n";
    EXPECT_LT(d, 1e-5) << name << " " << worst;
  }
}

// Expert parallelism in training: 50 demo-model steps with each layer's experts split over 2
// processes (P = 2), and over 2 x 2 processes (data x expert parallel), end where one process
// ends; the checkpoint holds every expert under its global name and evaluates in one process;
// a resume from an earlier checkpoint ends bitwise where the uninterrupted run ends.
TEST(Distributed, ExpertParallelTrainingEqualsOneProcess) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 1000, 100, 28, 10, 7, 600.0);  // noisy: accuracy below 100%
  auto one = testutil::run_command(testutil::cli() + demo_args(tmp, "one"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const io::SafetensorsFile reference = testutil::final_weights(tmp / "runs/one");
  const std::string ckpts = " --set train.checkpoint_every=20 --set train.keep_checkpoints=5";
  for (int nproc : {2, 4}) {
    const std::string name = "ep" + std::to_string(nproc);
    auto r = testutil::run_command(launch(nproc) + demo_args(tmp, name, "--set moe.expert_parallel=2" + ckpts));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("expert parallel: 2 processes share each layer's experts"), std::string::npos) << r.output;
    std::string worst;
    const io::SafetensorsFile got = testutil::final_weights(tmp / ("runs/" + name));
    ASSERT_EQ(got.names.size(), reference.names.size());
    const double d = testutil::max_relative_difference(reference, got, &worst);
    std::cout << "[ ep ] " << nproc << " processes, experts split over 2: largest relative weight difference " << d
              << " (" << worst << ")\n";
    EXPECT_LT(d, 1e-5) << worst;
  }
  // The P = 2 checkpoint evaluates identically in one process, and split over 2 and 4
  // processes (each its part of every test batch and its share of the experts).
  auto accuracy_line = [](const std::string& out) {
    const size_t at = out.find("train accuracy");
    return at == std::string::npos ? std::string("(none)") : out.substr(at, out.find('\n', at) - at);
  };
  // The step-20 checkpoint on the 1000 training images.
  const std::string early = " eval --split train --checkpoint " + (tmp / "runs/ep2/checkpoints/step_00000020");
  auto ev = testutil::run_command(testutil::cli() + early);
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  std::cout << "[ ep ] P = 2 checkpoint, 1 process: " << accuracy_line(ev.output) << "\n";
  for (int P : {2, 4}) {
    auto evp = testutil::run_command(launch(P) + early + " --set moe.expert_parallel=" + std::to_string(P) +
                                     " --set train.threads=1");
    ASSERT_EQ(evp.exit_code, 0) << evp.output;
    EXPECT_EQ(accuracy_line(evp.output), accuracy_line(ev.output)) << evp.output;
    std::cout << "[ ep ] P = 2 checkpoint, " << P << " processes, P = " << P << ": " << accuracy_line(evp.output) << "\n";
  }
  // Resume exactly at the same split; at another split (P = 4, or one process) within 1e-5.
  auto cut = [&](const std::string& name) {
    fs::copy(tmp / "runs/ep2", tmp / ("runs/" + name), fs::copy_options::recursive);
    fs::remove_all(tmp / ("runs/" + name + "/checkpoints/step_00000050"));
    fs::remove_all(tmp / ("runs/" + name + "/checkpoints/step_00000040"));
    return " train --plain --resume " + (tmp / ("runs/" + name));
  };
  auto resumed = testutil::run_command(launch(2) + cut("cut"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("from step 20"), std::string::npos) << resumed.output;
  EXPECT_EQ(read_file(tmp / "runs/cut/checkpoints/step_00000050/model.safetensors"),
            read_file(tmp / "runs/ep2/checkpoints/step_00000050/model.safetensors"));
  const io::SafetensorsFile ep2 = testutil::final_weights(tmp / "runs/ep2");
  for (int P : {4, 1}) {
    const std::string name = "cut-p" + std::to_string(P);
    auto r = testutil::run_command((P > 1 ? launch(P) : testutil::cli()) + cut(name) +
                                   " --set moe.expert_parallel=" + std::to_string(P));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("from step 20"), std::string::npos) << r.output;
    std::string worst;
    const double d = testutil::max_relative_difference(ep2, testutil::final_weights(tmp / ("runs/" + name)), &worst);
    std::cout << "[ ep ] saved at P = 2, resumed at P = " << P << ": largest relative weight difference " << d << " ("
              << worst << ")\n";
    EXPECT_LT(d, 1e-5) << worst;
  }
}

TEST(Distributed, ExpertParallelSizeMustDivideTheProcesses) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 100, 20);
  auto alone = testutil::run_command(testutil::cli() + demo_args(tmp, "alone", "--set moe.expert_parallel=2"));
  EXPECT_EQ(alone.exit_code, 2) << alone.output;
  EXPECT_NE(alone.output.find("moe.expert_parallel = 2 needs a multiple of 2 processes"), std::string::npos)
      << alone.output;
  auto three = testutil::run_command(launch(3) + demo_args(tmp, "three", "--set moe.expert_parallel=2"));
  EXPECT_EQ(three.exit_code, 2) << three.output;
  EXPECT_NE(three.output.find("this run has 3"), std::string::npos) << three.output;
}

TEST(Distributed, ABatchSmallerThanTheProcessesIsRefused) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 100, 20);
  auto r = testutil::run_command(launch(3) + demo_args(tmp, "small", "--set train.batch_size=2"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("fewer than the 3 processes"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "runs/small/checkpoints"));
}

// SIGKILL one rank mid-run: the other exits non-zero within dist.timeout_s + 10 s naming it,
// the last checkpoint is intact, and resuming ends bitwise where an uninterrupted run ends.
TEST(Distributed, AKilledRankStopsTheOthersAndResumeIsExact) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 512, 64, 8);
  auto whole = testutil::run_command(launch(2) + fault_args(tmp, "whole"));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  Background run(launch(2, "--grace 60") + fault_args(tmp, "killed"), tmp / "killed.log");
  const std::string ckpt = tmp / "runs/killed/checkpoints/step_00000040";
  ASSERT_TRUE(wait_for([&] { return fs::exists(ckpt); }, 120)) << read_file(run.log);
  const pid_t victim = child_with_rank(run.pid, 1);
  ASSERT_GT(victim, 0);
  ::kill(victim, SIGKILL);
  const auto killed_at = Clock::now();
  const int code = run.wait();
  const double took = std::chrono::duration<double>(Clock::now() - killed_at).count();
  const std::string log = read_file(run.log);
  EXPECT_NE(code, 0) << log;
  EXPECT_LT(took, 10.0 + 10.0) << log;
  EXPECT_NE(log.find("rank 0: error: lost rank 1"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1 was killed by signal 9"), std::string::npos) << log;

  auto resumed = testutil::run_command(launch(2) + " train --plain --resume " + (tmp / "runs/killed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const io::SafetensorsFile a = testutil::final_weights(tmp / "runs/whole"), b = testutil::final_weights(tmp / "runs/killed");
  for (const auto& [name, t] : a.tensors) EXPECT_TRUE(at::equal(t, b.at(name))) << name;

  // Ctrl-C to the launcher: it passes the signal on, the ranks agree on the step to stop after.
  expect_stop_and_exact_resume(tmp, launch(2), "interrupted", SIGINT);
}

// SIGTERM (or Ctrl-C) stops one process after its current step with a checkpoint of it, in one
// line naming the step and the resume command, exit code 128 + signal; --resume then ends
// bitwise where an uninterrupted run ends.
TEST(Distributed, AStopSignalCheckpointsTheStepReachedAndResumeIsExact) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 512, 64, 8);
  auto whole = testutil::run_command(testutil::cli() + fault_args(tmp, "whole"));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  expect_stop_and_exact_resume(tmp, testutil::cli(), "terminated", SIGTERM);
}

// A rank that hangs (SIGSTOP) is named by the others once dist.timeout_s has passed.
TEST(Distributed, AHungRankIsNamedAfterTheTimeout) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 512, 64, 8);
  Background run(launch(2, "--grace 30") + fault_args(tmp, "hung"), tmp / "hung.log");
  ASSERT_TRUE(wait_for([&] { return fs::exists(tmp / "runs/hung/checkpoints/step_00000020"); }, 120))
      << read_file(run.log);
  const pid_t victim = child_with_rank(run.pid, 1);
  ASSERT_GT(victim, 0);
  ::kill(victim, SIGSTOP);
  const auto stopped_at = Clock::now();
  ASSERT_TRUE(wait_for([&] { return read_file(run.log).find("rank 0: error") != std::string::npos; }, 60))
      << read_file(run.log);
  const double took = std::chrono::duration<double>(Clock::now() - stopped_at).count();
  const std::string log = read_file(run.log);
  EXPECT_LT(took, 10.0 + 10.0) << log;
  EXPECT_NE(log.find("rank 0: error: lost rank 1"), std::string::npos) << log;
  ::kill(victim, SIGKILL);
  EXPECT_NE(run.wait(), 0);
}
