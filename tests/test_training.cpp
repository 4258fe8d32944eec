// End-to-end training through the CLI on a synthetic IDX dataset: learning, run folder
// contents, eval of a checkpoint, exact resumption after SIGKILL, and checkpoint I/O.
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "dynamoe/io/checkpoint.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

using namespace dynamoe;
namespace fs = std::filesystem;

namespace {

/// A tiny-run command line: synthetic data in `data_dir`, runs under `runs`.
std::string train_cmd(const std::string& data_dir, const std::string& runs, const std::string& extra) {
  return testutil::cli() + " train --config " + testutil::source_dir() + "/configs/mlp_fashion.yaml" +
         " --set data.dataset=idx --set data.path=" + data_dir + " --set train.runs_dir=" + runs +
         " --set model.hidden=[64] --set train.warmup_steps=10 --set train.threads=1 " + extra;
}

std::map<std::string, at::Tensor> final_weights(const std::string& run_dir) {
  return io::load_safetensors(io::latest_checkpoint(run_dir + "/checkpoints") + "/model.safetensors").tensors;
}

}  // namespace

TEST(Training, LearnsAndWritesARunFolder) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 600, 200);
  auto r = testutil::run_command(train_cmd(tmp / "data", tmp / "runs", "--name a --set train.epochs=4 --set train.batch_size=32"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string run = tmp / "runs/a";
  for (const char* f : {"config.yaml", "metrics.csv", "metrics.jsonl", "summary.json"})
    EXPECT_TRUE(fs::exists(run + "/" + f)) << f;
  auto summary = nlohmann::json::parse(read_file(run + "/summary.json"));
  EXPECT_EQ(summary["steps"].get<int>(), 4 * 19);  // ceil(600 / 32) = 19 batches per epoch
  EXPECT_GT(summary["test_accuracy"].get<double>(), 0.9) << r.output;
  // metrics.csv: header + train rows every 50 steps (and the last) + 4 test rows.
  std::ifstream csv(run + "/metrics.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "step,epoch,split,loss,accuracy,lr,grad_norm,samples_per_s,elapsed_s,aux_loss,active_experts,perplexity,tokens_per_s");
  int tests = 0, trains = 0;
  for (std::string line; std::getline(csv, line);) {
    tests += line.find(",test,") != std::string::npos;
    trains += line.find(",train,") != std::string::npos;
  }
  EXPECT_EQ(tests, 4);
  EXPECT_EQ(trains, 2);
  // Evaluating the saved checkpoint reproduces the final accuracy.
  auto e = testutil::run_command(testutil::cli() + " eval --checkpoint " + run);
  ASSERT_EQ(e.exit_code, 0) << e.output;
  char expected[64];
  std::snprintf(expected, sizeof(expected), "test accuracy: %.2f%%", 100.0 * summary["test_accuracy"].get<double>());
  EXPECT_NE(e.output.find(expected), std::string::npos) << e.output << " vs " << expected;
  // The same name again is refused without --overwrite.
  auto again = testutil::run_command(train_cmd(tmp / "data", tmp / "runs", "--name a --set train.steps=3"));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("already exists"), std::string::npos) << again.output;
  // A run shorter than its warm-up says so (and the run above, 76 steps for 10 of warm-up, does not).
  EXPECT_EQ(r.output.find("warning:"), std::string::npos) << r.output;
  auto short_run = testutil::run_command(train_cmd(tmp / "data", tmp / "runs", "--name short --set train.steps=5"));
  ASSERT_EQ(short_run.exit_code, 0) << short_run.output;
  EXPECT_NE(short_run.output.find("warning: train.warmup_steps = 10 is not below the run's 5 steps"), std::string::npos)
      << short_run.output;
}

TEST(Training, PythonReadsARealCheckpoint) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 100, 20);
  auto r = testutil::run_command(train_cmd(tmp / "data", tmp / "runs", "--name p --set train.steps=5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string path = io::latest_checkpoint(tmp / "runs/p/checkpoints") + "/model.safetensors";
  io::SafetensorsFile f = io::load_safetensors(path);
  std::ofstream dump(tmp / "expected.txt");
  for (const auto& name : f.names) {
    const at::Tensor& t = f.at(name);
    at::Tensor d = t.to(torch::kDouble).contiguous().flatten();
    dump << name << " " << c10::toString(t.scalar_type()) << " " << t.dim();
    for (int64_t s : t.sizes()) dump << " " << s;
    char buf[64];
    for (int64_t i = 0; i < d.numel(); ++i) {
      std::snprintf(buf, sizeof(buf), " %a", d.data_ptr<double>()[i]);
      dump << buf;
    }
    dump << "\n";
  }
  dump.close();
  auto py = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() + "/tests/python/read_safetensors.py " +
                                 path + " " + (tmp / "expected.txt"));
  EXPECT_EQ(py.exit_code, 0) << py.output;
  EXPECT_NE(py.output.find(std::to_string(f.names.size()) + " tensors equal"), std::string::npos) << py.output;
  EXPECT_EQ(f.names.size(), 6u);  // layers.0.{weight,bias}, head.{weight,bias}, input_mean, input_std
  // examples/read_checkpoint.py, the reader the README offers users, finds the run's newest checkpoint.
  auto user = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() + "/examples/read_checkpoint.py " +
                                    (tmp / "runs/p") + " --values head.bias");
  ASSERT_EQ(user.exit_code, 0) << user.output;
  EXPECT_NE(user.output.find("6 tensors"), std::string::npos) << user.output;
  EXPECT_NE(user.output.find("layers.0.weight"), std::string::npos) << user.output;
  EXPECT_NE(user.output.find("tensor(["), std::string::npos) << user.output;
}

// A run killed with SIGKILL mid-way and resumed ends with weights bitwise identical to an
// uninterrupted run with the same seed (dropout on, so the RNG state must be restored too).
TEST(Training, ResumeAfterSigkillIsBitwiseIdentical) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 512, 64, 28);
  const std::string extra = "--set train.steps=1500 --set train.batch_size=16 --set train.checkpoint_every=50 "
                            "--set train.eval_every=500 --set model.hidden=[256,128] --set model.dropout=0.3";
  auto ref = testutil::run_command(train_cmd(tmp / "data", tmp / "runs", "--name ref " + extra));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;

  const std::string cmd = train_cmd(tmp / "data", tmp / "runs", "--name killed " + extra) + " > " + (tmp / "log") + " 2>&1";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const std::string ckpts = tmp / "runs/killed/checkpoints";
  bool killed_midway = false;
  for (int i = 0; i < 60000; ++i) {  // up to 60 s
    std::string latest = io::latest_checkpoint(ckpts);
    if (!latest.empty() && latest.find("step_00000100") != std::string::npos) {
      ::kill(pid, SIGKILL);
      killed_midway = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(killed_midway) << read_file(tmp / "log");
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(tmp / "runs/killed/summary.json"));

  auto resumed = testutil::run_command(testutil::cli() + " train --resume " + (tmp / "runs/killed"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming"), std::string::npos) << resumed.output;

  auto a = final_weights(tmp / "runs/ref"), b = final_weights(tmp / "runs/killed");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name << " differs after resume";
  }
  // The resumed metrics read as one run: each test evaluation step appears once.
  std::string jsonl = read_file(tmp / "runs/killed/metrics.jsonl");
  int evals = 0;
  for (size_t p = 0; (p = jsonl.find("\"split\":\"test\"", p)) != std::string::npos; ++p) ++evals;
  EXPECT_EQ(evals, 3);  // steps 500, 1000, 1500
  // ... and its clock goes on across the resume: elapsed_s never falls back.
  double last_elapsed = -1;
  std::istringstream rows(jsonl);
  for (std::string line; std::getline(rows, line);) {
    const auto row = nlohmann::json::parse(line);
    if (!row.contains("elapsed_s")) continue;
    const double e = row["elapsed_s"].get<double>();
    EXPECT_GE(e, last_elapsed) << "elapsed_s restarts after the resume at " << line;
    last_elapsed = e;
  }
}

TEST(Checkpoint, ResolveAndStrictLoad) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 64, 16);
  auto r = testutil::run_command(train_cmd(tmp / "data", tmp / "runs", "--name c --set train.steps=8 --set train.checkpoint_every=2 --set train.keep_checkpoints=2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // keep_checkpoints = 2: steps 6 and 8 remain, no temporary folders.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp / "runs/c/checkpoints")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000006", "step_00000008"}));
  const std::string latest = tmp / "runs/c/checkpoints/step_00000008";
  EXPECT_EQ(io::resolve_checkpoint(tmp / "runs/c"), latest);
  EXPECT_EQ(io::resolve_checkpoint(latest + "/model.safetensors"), latest);
  testutil::expect_error([&] { io::resolve_checkpoint(tmp / "nothing"); }, {"nothing' does not exist"});
  // A file other than model.safetensors is named as a file, not as missing.
  testutil::expect_error([&] { io::resolve_checkpoint(latest + "/state.json"); },
                         {"state.json' is a file, not a checkpoint folder"});
  // A checkpoint from a different architecture is refused with the tensor's name.
  auto e = testutil::run_command(testutil::cli() + " eval --checkpoint " + latest + " --set model.hidden=[32]");
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_NE(e.output.find("layers.0.weight"), std::string::npos) << e.output;
  // A truncated model file is a clear error, not a crash.
  std::string bytes = read_file(latest + "/model.safetensors");
  write_file_atomic(latest + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
  e = testutil::run_command(testutil::cli() + " eval --checkpoint " + latest);
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_NE(e.output.find("model.safetensors"), std::string::npos) << e.output;
  EXPECT_EQ(std::count(e.output.begin(), e.output.end(), '\n'), 1) << e.output;
}
