// The one training loop (train/train_loop.h) as every task sees it, through the CLI on synthetic
// data: the common row fields, numeric routing entropy for every router of an image model (it
// was null for dynamoe's noisy g), a router that needs token ids refused before anything is
// written, and a run resumed at its end that logs no second evaluation.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dynamoe/io/safetensors.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/hash.h"
#include "test_util.h"

using namespace dynamoe;
namespace fs = std::filesystem;

namespace {

std::string moe_cmd(const testutil::TempDir& tmp, const std::string& name, const std::string& extra) {
  return testutil::cli() + " train --plain --config " + testutil::source_dir() + "/configs/demo.yaml --name " + name +
         " --set data.dataset=idx --set data.path=" + (tmp / "data") + " --set train.runs_dir=" + (tmp / "runs") +
         " --set model.d_model=16 --set moe.experts.hidden=16 --set train.steps=6 --set train.log_every=2"
         " --set train.eval_every=3 --set train.warmup_steps=2 --set train.batch_size=16 --set train.threads=1 " +
         extra;
}

std::vector<nlohmann::json> rows(const std::string& run_dir, const std::string& split) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(read_file(run_dir + "/metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    auto row = nlohmann::json::parse(line);
    if (row["split"] == split) out.push_back(row);
  }
  return out;
}

}  // namespace

TEST(TrainLoop, ClassifierRowsCarryTheCommonFields) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  auto r = testutil::run_command(moe_cmd(tmp, "a", "--set train.grad_clip=0"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // grad_norm is measured even when nothing is clipped
  EXPECT_EQ(testutil::expect_common_row_fields(tmp / "runs/a", "samples"), 3);
  const auto s = nlohmann::json::parse(read_file(tmp / "runs/a/summary.json"));
  EXPECT_GT(s["train_samples_per_s"].get<double>(), 0);
  EXPECT_EQ(s["steps_this_process"].get<int>(), 6);
}

TEST(TrainLoop, RoutingEntropyIsANumberForEveryRouterOfAnImageModel) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  for (const std::string& router : moe::router_names()) {
    if (moe::router_traits(router).needs_token_ids) continue;
    auto r = testutil::run_command(moe_cmd(tmp, router, "--set moe.router.kind=" + router));
    ASSERT_EQ(r.exit_code, 0) << router << ": " << r.output;
    for (const char* split : {"train", "test"})
      for (const auto& row : rows(tmp / ("runs/" + router), split))
        for (const auto& layer : row.at("moe")) {
          ASSERT_TRUE(layer.at("entropy").is_number()) << router << " " << split << ": " << layer.dump();
          EXPECT_GE(layer["entropy"].get<double>(), 0.0) << router;
        }
  }
}

TEST(TrainLoop, ARouterThatNeedsTokenIdsIsRefusedBeforeAnythingIsWritten) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  auto r = testutil::run_command(moe_cmd(tmp, "h", "--set moe.router.kind=hash"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("moe.router.kind = 'hash' routes by token id"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "runs/h"));
}

TEST(TrainLoop, AFinishedRunResumedLogsNoSecondEvaluation) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  auto r = testutil::run_command(moe_cmd(tmp, "f", ""));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto before = nlohmann::json::parse(read_file(tmp / "runs/f/summary.json"));
  r = testutil::run_command(testutil::cli() + " train --plain --resume " + (tmp / "runs/f"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(rows(tmp / "runs/f", "test").size(), 2u);  // steps 3 and 6, once each
  const auto after = nlohmann::json::parse(read_file(tmp / "runs/f/summary.json"));
  EXPECT_EQ(after["test_accuracy"], before["test_accuracy"]);
  EXPECT_EQ(after["steps_this_process"].get<int>(), 0);
}

TEST(Repository, PointsAtNoFileOutsideItself) {
  // Docs and comments cite docs/methods.md; a user's clone has nothing beside it.
  const fs::path root = testutil::source_dir();
  std::vector<std::string> offenders;
  for (const char* top : {"src", "tests", "docs", "configs", "bench", "scripts", "examples", "cmake"}) {
    if (!fs::exists(root / top)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / top)) {
      if (!e.is_regular_file() || e.path().filename() == "test_train_loop.cpp") continue;
      const std::string ext = e.path().extension().string();
      if (ext != ".h" && ext != ".cpp" && ext != ".md" && ext != ".py" && ext != ".yaml" && ext != ".sh") continue;
      if (read_file(e.path().string()).find("shared/specs") != std::string::npos) offenders.push_back(e.path().string());
    }
  }
  for (const char* f : {"README.md", "Makefile", "CMakeLists.txt"})
    if (read_file((root / f).string()).find("shared/specs") != std::string::npos) offenders.push_back(f);
  EXPECT_TRUE(offenders.empty()) << "these files point at shared/specs, which a clone does not have: "
                                 << ::testing::PrintToString(offenders);
}

// --overwrite never loses the old run before the new one is safe: a new run that fails before
// its first checkpoint puts the old run back untouched; one that checkpoints replaces it and
// leaves nothing behind.
TEST(TrainLoop, OverwriteKeepsTheOldRunUntilTheNewOneHasACheckpoint) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  auto first = testutil::run_command(moe_cmd(tmp, "a", ""));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::string summary = read_file(tmp / "runs/a/summary.json");
  // SGD at lr 10 without clipping diverges within a few steps, long before step 1000's checkpoint.
  auto failed = testutil::run_command(moe_cmd(tmp, "a", "--overwrite --set train.optimizer=sgd --set train.lr=10 "
                                                        "--set train.grad_clip=0 --set train.warmup_steps=0 "
                                                        "--set train.steps=1000 --set train.eval_every=1000"));
  ASSERT_NE(failed.exit_code, 0) << failed.output;
  EXPECT_NE(failed.output.find("training diverged"), std::string::npos) << failed.output;
  EXPECT_EQ(read_file(tmp / "runs/a/summary.json"), summary);
  EXPECT_TRUE(fs::exists(tmp / "runs/a/checkpoints/step_00000006/model.safetensors"));
  auto again = testutil::run_command(moe_cmd(tmp, "a", "--overwrite --set train.seed=1"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(read_file(tmp / "runs/a/summary.json"), summary);
  for (const auto& e : fs::directory_iterator(tmp / "runs"))
    EXPECT_EQ(e.path().filename().string().rfind(".replaced-", 0), std::string::npos) << e.path();
}

// A bit flip in a checkpoint is found by its checksum: eval refuses it, and --resume falls back
// to the checkpoint before it and still ends bitwise where an uninterrupted run ends.
TEST(TrainLoop, ADamagedCheckpointIsFoundAndResumeFallsBackToTheOneBefore) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  auto whole = testutil::run_command(moe_cmd(tmp, "whole", "--set train.checkpoint_every=2 --set train.keep_checkpoints=5"));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  fs::copy(tmp / "runs/whole", tmp / "runs/cut", fs::copy_options::recursive);
  fs::remove_all(tmp / "runs/cut/checkpoints/step_00000006");
  const std::string damaged = tmp / "runs/cut/checkpoints/step_00000004/model.safetensors";
  std::string bytes = read_file(damaged);
  bytes[bytes.size() - 5] ^= 0x10;  // one bit of the last tensor
  write_file_atomic(damaged, bytes);

  auto ev = testutil::run_command(testutil::cli() + " eval --checkpoint " + (tmp / "runs/cut/checkpoints/step_00000004"));
  EXPECT_NE(ev.exit_code, 0) << ev.output;
  EXPECT_NE(ev.output.find("model.safetensors is damaged"), std::string::npos) << ev.output;

  auto resumed = testutil::run_command(testutil::cli() + " train --plain --resume " + (tmp / "runs/cut"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("is damaged"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("from step 2"), std::string::npos) << resumed.output;
  EXPECT_EQ(read_file(tmp / "runs/cut/checkpoints/step_00000006/model.safetensors"),
            read_file(tmp / "runs/whole/checkpoints/step_00000006/model.safetensors"));
}

// A checkpoint holding NaN (written by hand, with a matching checksum: training stops before
// saving one) is an error on eval naming the tensor, and resume falls back to the one before.
TEST(TrainLoop, ACheckpointHoldingNaNIsRefused) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  auto run = testutil::run_command(moe_cmd(tmp, "nan", "--set train.checkpoint_every=2 --set train.keep_checkpoints=5"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::string ckpt = tmp / "runs/nan/checkpoints/step_00000004";
  fs::remove_all(tmp / "runs/nan/checkpoints/step_00000006");
  io::SafetensorsFile f = io::load_safetensors(ckpt + "/model.safetensors");
  io::NamedTensors tensors;
  for (const std::string& name : f.names) tensors.emplace_back(name, f.tensors.at(name).clone());
  std::string poisoned;
  for (auto& [name, t] : tensors)
    if (t.is_floating_point() && t.numel() > 1 && poisoned.empty()) {
      t.view(-1)[1] = std::nan("");
      poisoned = name;
    }
  io::save_safetensors(ckpt + "/model.safetensors", tensors);
  auto state = nlohmann::json::parse(read_file(ckpt + "/state.json"));
  state["checksums"]["model.safetensors"] = fnv1a64_hex(read_file(ckpt + "/model.safetensors"));
  write_file_atomic(ckpt + "/state.json", state.dump());
  auto ev = testutil::run_command(testutil::cli() + " eval --checkpoint " + ckpt);
  EXPECT_NE(ev.exit_code, 0) << ev.output;
  EXPECT_NE(ev.output.find("tensor '" + poisoned + "' holds 1 NaN and 0 infinite values"), std::string::npos)
      << ev.output;
  auto resumed = testutil::run_command(testutil::cli() + " train --plain --resume " + (tmp / "runs/nan"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("holds 1 NaN"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("from step 2"), std::string::npos) << resumed.output;
}

// A model too large for this machine is refused from its widths before anything is allocated
// (it once allocated gigabytes and then failed with LibTorch's own message).
TEST(TrainLoop, AModelTooLargeForMemoryIsAConfigErrorNamingItsWidths) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 96, 32);
  const auto start = std::chrono::steady_clock::now();
  auto r = testutil::run_command(moe_cmd(tmp, "huge", "--set model.d_model=1000000 --set moe.experts.hidden=1000000"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model.d_model = 1000000, moe.experts.hidden = 1000000"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("billion parameters"), std::string::npos) << r.output;
  EXPECT_LT(seconds, 10.0) << "it should fail before building anything";
  EXPECT_FALSE(fs::exists(tmp / "runs/huge"));
}
