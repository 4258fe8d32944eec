// dynamoe sweep: grid expansion, run names, validation errors naming the run and the key, and a
// tiny real sweep on Fashion-MNIST that is killed after its first run and resumed without
// redoing finished runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "dynamoe/sweep/model_info.h"
#include "dynamoe/sweep/sweep_runner.h"
#include "dynamoe/sweep/sweep_spec.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;
namespace fs = std::filesystem;

namespace {

const char* kGrid = R"(
name: demo
base: {model: {kind: moe_mlp, d_model: 16, moe_layers: 2}, moe: {experts: {hidden: 8}}}
set: {train.steps: 10}
axes:
  moe.layers.schedule: [uniform, descending]
  router:
    top_k: {moe.router.kind: top_k, moe.router.k: 2}
    dynamoe: {moe: {router: {kind: dynamoe}}}
  train.seed: [0, 1]
exclude:
  - {schedule: descending, router: top_k, seed: 1}
extra:
  - name: dense
    set: {model.kind: mlp, model.hidden: [32]}
    axes:
      train.seed: same
)";

std::vector<std::string> names(const std::vector<sweep::SweepRun>& runs) {
  std::vector<std::string> out;
  for (const auto& r : runs) out.push_back(r.name);
  return out;
}

}  // namespace

TEST(SweepSpec, GridIsTheProductOfItsAxesInOrder) {
  const sweep::SweepSpec spec = sweep::parse_sweep(kGrid, "");
  const auto runs = sweep::expand(spec);
  EXPECT_EQ(names(runs), (std::vector<std::string>{
                             "uniform-top_k-seed0", "uniform-top_k-seed1", "uniform-dynamoe-seed0", "uniform-dynamoe-seed1",
                             "descending-top_k-seed0", "descending-dynamoe-seed0", "descending-dynamoe-seed1",
                             "dense-seed0", "dense-seed1"}));
  // Overrides: the sweep's set, the grid's set, then each axis in order; nested maps are flattened.
  EXPECT_EQ(runs[2].overrides, (std::vector<std::string>{"train.steps=10", "moe.layers.schedule=uniform", "moe.router.kind=dynamoe",
                                                         "train.seed=0"}));
  EXPECT_EQ(runs[7].overrides, (std::vector<std::string>{"train.steps=10", "model.kind=mlp", "model.hidden=[32]",
                                                         "train.seed=0"}));
  EXPECT_EQ(runs[7].grid, "dense");
  EXPECT_EQ(runs[0].axes, (std::vector<std::pair<std::string, std::string>>{
                              {"schedule", "uniform"}, {"router", "top_k"}, {"seed", "seed0"}}));
  // The configs resolve (base + overrides) and keep each run's values.
  const auto cfgs = sweep::resolve_runs(spec, runs);
  ASSERT_EQ(cfgs.size(), runs.size());
  EXPECT_EQ(cfgs[5].moe.layers.schedule.kind(), "descending");
  EXPECT_EQ(cfgs[5].moe.router.kind(), "dynamoe");
  EXPECT_EQ(cfgs[8].model.kind, "mlp");
  EXPECT_EQ(cfgs[8].train.seed, 1);
  EXPECT_EQ(cfgs[8].model.hidden, (std::vector<int64_t>{32}));
  // Report layout defaults: colour = first axis, facet = second, seed axis found by its key.
  EXPECT_EQ(spec.layout.color, "schedule");
  EXPECT_EQ(spec.layout.facet, "router");
  EXPECT_TRUE(spec.layout.select.empty());
  EXPECT_EQ(spec.layout.seed, "seed");
}

TEST(SweepSpec, NamesAreDeterministicAndSafe) {
  const char* text = R"(
base: {}
axes:
  train.lr: [0.001, 3e-4]
  model.hidden: [[64, 32], [128]]
  width: {"a b/c": {model.d_model: 8}}
only:
  - {lr: 0.001}
)";
  const auto runs = sweep::expand(sweep::parse_sweep(text, "study.yaml"));
  EXPECT_EQ(names(runs), (std::vector<std::string>{"lr0.001-hidden64x32-a_b_c", "lr0.001-hidden128-a_b_c"}));
  EXPECT_EQ(sweep::expand(sweep::parse_sweep(text, "study.yaml"))[1].name, runs[1].name);
  EXPECT_EQ(sweep::parse_sweep(text, "dir/study.yaml").name, "study");  // the file's stem
}

// dynamoe sweep --base CONFIG --axis KEY=V1,V2 --seeds N: a grid without a sweep file.
TEST(SweepSpec, CommandLineAxesMakeTheGrid) {
  const std::string base = testutil::source_dir() + "/configs/demo.yaml";
  const sweep::SweepSpec spec =
      sweep::command_line_sweep(base, {"moe.router.kind=top_k,dtop_p", "moe.layers.schedule=uniform"}, 2);
  EXPECT_EQ(spec.name, "demo-router-schedule");
  const auto runs = sweep::expand(spec);
  EXPECT_EQ(names(runs), (std::vector<std::string>{"top_k-uniform-seed0", "top_k-uniform-seed1", "dtop_p-uniform-seed0",
                                                   "dtop_p-uniform-seed1"}));
  EXPECT_EQ(runs[3].overrides, (std::vector<std::string>{"moe.router.kind=dtop_p", "moe.layers.schedule=uniform",
                                                         "train.seed=1"}));
  const auto cfgs = sweep::resolve_runs(spec, runs);
  EXPECT_EQ(cfgs[2].moe.router.kind(), "dtop_p");
  EXPECT_EQ(cfgs[2].model.d_model, 128) << "the rest comes from the base";
  EXPECT_EQ(sweep::command_line_sweep(base, {}, 3, "three").name, "three");
  EXPECT_EQ(sweep::expand(sweep::command_line_sweep(base, {}, 3)).size(), 3u);
  // Mistakes name the argument.
  testutil::expect_error([&] { sweep::command_line_sweep(base, {"moe.router.kind"}, 0); }, {"--axis 'moe.router.kind'", "KEY=V1,V2"});
  testutil::expect_error([&] { sweep::command_line_sweep(base, {"train.lr=1,,2"}, 0); }, {"an empty value"});
  testutil::expect_error([&] { sweep::command_line_sweep(base, {"train.lr=1", "train.lr=2"}, 0); }, {"given twice"});
  testutil::expect_error([&] { sweep::command_line_sweep(base, {"train.seed=1,2"}, 2); }, {"already sets train.seed"});
  testutil::expect_error([&] { sweep::command_line_sweep(base, {}, 0); }, {"at least one --axis"});
  testutil::expect_error([&] { sweep::command_line_sweep("nope.yaml", {"train.lr=1"}, 0); }, {"no config file 'nope.yaml'"});
  testutil::expect_error([&] { sweep::command_line_sweep(base, {"moe.router.kind=top_k,top_kk"}, 0); },
                         {"--axis: config: moe.router.kind = 'top_kk' is not one of"});
  testutil::expect_error([&] { sweep::command_line_sweep(base, {"train.lr=0.1,-1"}, 0); },
                         {"--axis: config: train.lr = -1.0 is out of range"});
  // The command: a dry run lists the grid; a file and --base together are a usage error.
  testutil::TempDir tmp;
  auto r = testutil::run_command(testutil::cli() + " sweep --base " + base +
                                 " --axis moe.router.kind=top_k,relu --seeds 2 --dry-run --runs-dir " + (tmp / "runs"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* run : {"top_k-seed0", "top_k-seed1", "relu-seed0", "relu-seed1"})
    EXPECT_NE(r.output.find(run), std::string::npos) << run << "\n" << r.output;
  r = testutil::run_command(testutil::cli() + " sweep " + base + " --base " + base);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("give one sweep FILE, or --base CONFIG"), std::string::npos) << r.output;
}

TEST(SweepSpec, MistakesAreOneLineErrorsNamingTheEntry) {
  auto err = [](const std::string& text) { return testutil::config_error([&] { sweep::parse_sweep(text, "s.yaml"); }); };
  std::string m = err("axes: {moe.shedule: [uniform]}\n");
  EXPECT_NE(m.find("moe.shedule"), std::string::npos) << m;
  EXPECT_NE(m.find("moe.layers.schedule"), std::string::npos) << m;  // the suggestion
  EXPECT_NE(m.find("s.yaml:1"), std::string::npos) << m;
  m = err("axes: {size: {small: {model.d_modle: 8}}}\n");
  EXPECT_NE(m.find("model.d_modle"), std::string::npos) << m;
  m = err("axes: {moe.layers.schedule: [uniform, triangle]}\n");
  EXPECT_NE(m.find("triangle"), std::string::npos) << m;
  m = err("axes: {moe.layers.schedule: [uniform]}\nexclude: [{router: top_k}]\n");
  EXPECT_NE(m.find("no axis 'router'"), std::string::npos) << m;
  m = err("axes: {moe.layers.schedule: [uniform]}\nexclude: [{schedule: wave}]\n");
  EXPECT_NE(m.find("no value 'wave'"), std::string::npos) << m;
  m = err("axes: {moe.layers.schedule: [uniform]}\nextra: [{name: x, axes: {router: same}}]\n");
  EXPECT_NE(m.find("'router' is 'same'"), std::string::npos) << m;
  m = err("axes: {moe.layers.schedule: [uniform]}\nextra: [{name: x}, {name: x}]\n");
  EXPECT_NE(m.find("two extra grids are called 'x'"), std::string::npos) << m;
  m = err("base: nowhere.yaml\n");
  EXPECT_NE(m.find("nowhere.yaml"), std::string::npos) << m;
  m = err("axis: {moe.layers.schedule: [uniform]}\n");
  EXPECT_NE(m.find("unknown entry 'axis'"), std::string::npos) << m;
  m = err("axes: {size: [1, 2]}\n");
  EXPECT_NE(m.find("must be a config key"), std::string::npos) << m;
  m = err("axes: {moe.layers.schedule: [uniform]}\nreport: {color: router}\n");
  EXPECT_NE(m.find("'router' is not an axis"), std::string::npos) << m;
  for (const std::string& msg : {m}) EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(SweepSpec, InvalidCellFailsBeforeAnyRunNamingRunAndKey) {
  // Each value is valid on its own; the combination e_min > e_max is not.
  const char* text = R"(
name: bad
base: {model: {kind: moe_mlp}}
axes:
  moe.layers.e_min: [2, 9]
  moe.layers.schedule: [uniform]
)";
  const sweep::SweepSpec spec = sweep::parse_sweep(text, "bad.yaml");
  const std::string m = testutil::config_error([&] { sweep::resolve_runs(spec, sweep::expand(spec)); });
  EXPECT_NE(m.find("run 'e_min9-uniform'"), std::string::npos) << m;
  EXPECT_NE(m.find("moe.layers.e_min"), std::string::npos) << m;
  // The CLI refuses it with exit code 2 and writes nothing.
  testutil::TempDir tmp;
  write_file_atomic(tmp / "bad.yaml", text);
  auto r = testutil::run_command(testutil::cli() + " sweep " + (tmp / "bad.yaml") + " --runs-dir " + (tmp / "runs"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("e_min9-uniform"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "runs/bad"));
}

TEST(SweepSpec, ModelInfoSplitsExpertParameters) {
  config::Config cfg = config::parse_config("model: {kind: moe_mlp, d_model: 16, moe_layers: 2}\n"
                                            "moe: {experts: {hidden: 8}, layers: {schedule: descending, e_min: 2, e_max: 4}}\n",
                                            "test");
  auto info = sweep::model_info(cfg);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->experts, (std::vector<int64_t>{4, 2}));
  const int64_t per_expert = 2 * 16 * 8 + 8 + 16;  // ffn: w1, b1, w2, b2
  EXPECT_EQ(info->expert_params, (std::vector<int64_t>{4 * per_expert, 2 * per_expert}));
  EXPECT_EQ(info->always_params, (std::vector<int64_t>{16 * 4, 16 * 2}));  // linear gates, no bias
  EXPECT_EQ(info->parameters, info->dense_parameters + 6 * per_expert + 16 * 6);
  // Two active experts per layer: the dense part, the gates and 2 experts per layer.
  EXPECT_DOUBLE_EQ(info->active_parameters({2, 2}),
                   static_cast<double>(info->dense_parameters + 16 * 6 + 4 * per_expert));
  cfg.data.dataset = "idx";
  EXPECT_FALSE(sweep::model_info(cfg).has_value());
}

// ---- a tiny real sweep, killed and resumed -------------------------------------------------

namespace {

std::string tiny_sweep(const std::string& data_dir) {
  return "name: tiny\n"
         "base:\n"
         "  model: {kind: moe_mlp, d_model: 16, moe_layers: 2}\n"
         "  moe: {experts: {hidden: 16}, layers: {e_min: 2, e_max: 4}}\n"
         "  data: {dataset: fashion-mnist, dir: " + data_dir + ", train_limit: 512, test_limit: 200}\n"
         "  train: {steps: 24, batch_size: 32, eval_every: 12, log_every: 6, warmup_steps: 4, gradnoise_every: 12,\n"
         "          gradnoise_batches: 2}\n"
         "axes:\n"
         "  moe.layers.schedule: [descending, ascending]\n"
         "  router:\n"
         "    dynamoe: {moe.router.kind: dynamoe}\n"
         "  train.seed: [0]\n"
         "extra:\n"
         "  - name: dense\n"
         "    set: {model.kind: mlp, model.hidden: [32]}\n";
}

pid_t spawn(const std::vector<std::string>& args, const std::string& out_path) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::freopen(out_path.c_str(), "w", stdout);
    (void)f;
    ::dup2(1, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace

TEST(Sweep, KilledAfterTheFirstRunResumesWithoutRedoingIt) {
  testutil::TempDir tmp;
  const std::string data_dir = testutil::source_dir() + "/data";
  auto f = testutil::run_command(testutil::cli() + " data fetch fashion-mnist --data-dir " + data_dir);
  ASSERT_EQ(f.exit_code, 0) << f.output;
  const std::string file = tmp / "tiny.yaml";
  write_file_atomic(file, tiny_sweep(data_dir));
  const std::string runs = tmp / "runs";
  const fs::path dir = fs::path(runs) / "tiny";

  // Dry run: three runs, all to start, with parameter counts.
  auto d = testutil::run_command(testutil::cli() + " sweep " + file + " --runs-dir " + runs + " --dry-run");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_NE(d.output.find("descending-dynamoe-seed0"), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("dense"), std::string::npos) << d.output;
  EXPECT_FALSE(fs::exists(dir / "sweep.json"));

  // Start it (one run at a time) and kill it with SIGTERM once the first run has its summary.
  const pid_t pid = spawn({testutil::cli(), "sweep", file, "--runs-dir", runs, "--jobs", "1", "--no-report"}, tmp / "first.txt");
  const fs::path first = dir / "descending-dynamoe-seed0" / "summary.json";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(first) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(first)) << read_file(tmp / "first.txt");
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string out1 = read_file(tmp / "first.txt");
  ASSERT_TRUE(WIFEXITED(status)) << out1;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM) << out1;
  EXPECT_NE(out1.find("terminated"), std::string::npos) << out1;
  const auto mtime = fs::last_write_time(first);
  EXPECT_FALSE(fs::exists(dir / "dense" / "summary.json"));
  // The child of the killed sweep is gone too: no trainer still writes into the folder.
  auto j = nlohmann::json::parse(read_file((dir / "sweep.json").string()));
  for (const auto& r : j["runs"]) EXPECT_NE(r["status"], "running") << r.dump();

  // Again: the finished run is skipped, the grid completes.
  auto second = testutil::run_command(testutil::cli() + " sweep " + file + " --runs-dir " + runs + " --jobs 2 --no-report");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("(1 done"), std::string::npos) << second.output;
  EXPECT_EQ(second.output.find("start  descending-dynamoe-seed0"), std::string::npos) << second.output;
  EXPECT_EQ(fs::last_write_time(first), mtime);
  for (const char* run : {"descending-dynamoe-seed0", "ascending-dynamoe-seed0", "dense"}) {
    EXPECT_TRUE(fs::exists(dir / run / "summary.json")) << run << "\n" << second.output;
    EXPECT_TRUE(fs::exists(dir / run / "train.log")) << run;
  }
  EXPECT_NE(read_file((dir / "ascending-dynamoe-seed0" / "train.log").string()).find("done: 24 steps"), std::string::npos);
  j = nlohmann::json::parse(read_file((dir / "sweep.json").string()));
  ASSERT_EQ(j["runs"].size(), 3u);
  for (const auto& r : j["runs"]) EXPECT_EQ(r["status"], "done") << r.dump();
  EXPECT_EQ(j["runs"][0]["axes"]["schedule"], "descending");
  EXPECT_EQ(j["layout"]["color"], "schedule");

  // A third time: nothing to do.
  auto third = testutil::run_command(testutil::cli() + " sweep " + file + " --runs-dir " + runs + " --no-report");
  ASSERT_EQ(third.exit_code, 0) << third.output;
  EXPECT_NE(third.output.find("3 of 3 runs done (0 this time)"), std::string::npos) << third.output;
  EXPECT_EQ(fs::last_write_time(first), mtime);
}

TEST(Sweep, FailedRunIsReportedWithItsLogWithoutStoppingTheOthers) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "idx", 64, 32);
  // The second run points at a folder without data: it fails when it loads it.
  const std::string text = "name: mixed\n"
                           "base: {model: {kind: mlp, hidden: [8]}, data: {dataset: idx, path: " + (tmp / "idx") + "},\n"
                           "       train: {steps: 3, batch_size: 16, log_every: 1}}\n"
                           "axes:\n"
                           "  data:\n"
                           "    good: {}\n"
                           "    missing: {data.path: " + (tmp / "nothing") + "}\n";
  write_file_atomic(tmp / "mixed.yaml", text);
  auto r = testutil::run_command(testutil::cli() + " sweep " + (tmp / "mixed.yaml") + " --runs-dir " + (tmp / "runs") +
                                 " --jobs 2 --no-report");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("failed: missing"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find((tmp / "runs/mixed/missing/train.log")), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(tmp / "runs/mixed/good/summary.json")) << r.output;
  EXPECT_NE(read_file(tmp / "runs/mixed/missing/train.log").find("error"), std::string::npos);
}

// Runs whose resolved configs are identical (an extra grid repeating a main cell) are trained
// once; the twin's folder is a link to it, and a later invocation has nothing to do.
TEST(Sweep, IdenticalRunsAreTrainedOnceAndLinked) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "idx", 64, 32);
  const std::string text = "name: twins\n"
                           "base: {model: {kind: mlp, hidden: [8]}, data: {dataset: idx, path: " + (tmp / "idx") + "},\n"
                           "       train: {steps: 3, batch_size: 16, log_every: 1}}\n"
                           "axes:\n"
                           "  model.hidden: [[8], [12]]\n"
                           "extra:\n"
                           "  - name: again\n"
                           "    set: {model.hidden: [12]}\n";
  write_file_atomic(tmp / "twins.yaml", text);
  const std::string cmd = testutil::cli() + " sweep " + (tmp / "twins.yaml") + " --runs-dir " + (tmp / "runs");
  auto d = testutil::run_command(cmd + " --dry-run");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_NE(d.output.find("(same config as hidden12: run once)"), std::string::npos) << d.output;
  auto r = testutil::run_command(cmd + " --jobs 2 --no-report");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 run has the same config as an earlier run"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("start  again"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 of 3 runs done (2 this time, 1 of 1 identical runs linked to their twin)"), std::string::npos)
      << r.output;
  const fs::path twin = fs::path(tmp / "runs/twins") / "again";
  EXPECT_TRUE(fs::is_symlink(twin));
  EXPECT_EQ(fs::read_symlink(twin), fs::path("hidden12"));
  EXPECT_TRUE(fs::exists(twin / "summary.json"));
  const auto j = nlohmann::json::parse(read_file(tmp / "runs/twins/sweep.json"));
  EXPECT_EQ(j["runs"][2]["same_as"], "hidden12") << j.dump();
  EXPECT_EQ(j["runs"][2]["status"], "same as hidden12") << j.dump();
  auto again = testutil::run_command(cmd + " --no-report");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("3 of 3 runs done (0 this time"), std::string::npos) << again.output;
  // An equal-budget cell whose total_experts gives the schedule's own experts per layer is the
  // same run: the quick study's 12 iso cells of the descending and ascending schedules (20
  // experts in 4 layers either way).
  auto quick = testutil::run_command(testutil::cli() + " sweep " + testutil::source_dir() +
                                     "/configs/studies/dynamoe-quick.yaml --dry-run --runs-dir " + (tmp / "runs"));
  ASSERT_EQ(quick.exit_code, 0) << quick.output;
  size_t same = 0;
  for (size_t at = quick.output.find("(same config as "); at != std::string::npos;
       at = quick.output.find("(same config as ", at + 1))
    ++same;
  EXPECT_EQ(same, 12u) << quick.output;
  EXPECT_NE(quick.output.find("iso-descending-mnist-seed0"), std::string::npos);
  EXPECT_NE(quick.output.find("(same config as descending-dynamoe-mnist-seed0: run once)"), std::string::npos) << quick.output;
}

// A grid of 10^12 cells (six axes of 100 values) is refused from the axis lengths, before one
// run is built (it used to grow to 16 GB in a minute, even with --dry-run).
TEST(SweepSpec, AHugeGridIsRefusedBeforeItIsExpanded) {
  std::string axes;
  for (const char* key : {"train.seed", "train.steps", "train.warmup_steps", "train.log_every", "train.eval_every",
                          "train.batch_size"}) {
    axes += std::string("  ") + key + ": [";
    for (int v = 1; v <= 100; ++v) axes += (v > 1 ? ", " : "") + std::to_string(v);
    axes += "]\n";
  }
  const sweep::SweepSpec spec = sweep::parse_sweep("name: huge\nbase: {}\naxes:\n" + axes, "huge.yaml");
  testutil::expect_error([&] { sweep::expand(spec); }, {"sweep huge.yaml", "1e+12 cells", "100000"});
}
