#include "dynamoe/bench/train_bench.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <vector>

#include "dynamoe/bench/stats.h"
#include "dynamoe/config/config.h"
#include "dynamoe/train/trainer.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::bench {
namespace fs = std::filesystem;
namespace {

/// dynamoe's trainer on the config: samples/s over the steps after the warm-up window, read
/// back from the run's metrics.jsonl (the figure its progress line shows).
double dynamoe_samples_per_s(const TrainBenchOptions& o, const fs::path& runs) {
  const std::vector<std::string> overrides = {
      "train.steps=" + std::to_string(o.warmup + o.steps), "train.log_every=" + std::to_string(o.warmup),
      "train.threads=" + std::to_string(o.threads), "train.eval_every=0", "train.runs_dir=" + runs.string()};
  config::Config cfg = config::load_config(o.config, overrides);
  std::ostringstream quiet;
  train::TrainOptions to;
  to.name = "e2e";
  to.overwrite = true;
  to.out = &quiet;
  train::TrainResult r = train::run_training(cfg, to);
  std::ifstream in(fs::path(r.run_dir) / "metrics.jsonl");
  double samples = 0, seconds = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("split", "") != "train" || j.value("step", 0) <= o.warmup) continue;
    const double n = double(o.warmup) * double(cfg.train.batch_size);  // one window of log_every steps
    samples += n;
    seconds += n / j["samples_per_s"].get<double>();
  }
  DYNAMOE_CHECK(seconds > 0, "bench e2e: no timed training windows in ", r.run_dir, "/metrics.jsonl");
  return samples / seconds;
}

double peer_samples_per_s(const TrainBenchOptions& o, const std::string& data_dir) {
  const std::string cmd = o.python + " '" + o.peer_script + "' --data '" + data_dir + "' --steps " +
                          std::to_string(o.steps) + " --warmup-steps " + std::to_string(o.warmup) +
                          " --batch-size 128 --threads " + std::to_string(o.threads) + " 2>/dev/null";
  FILE* p = popen(("OMP_WAIT_POLICY=PASSIVE " + cmd).c_str(), "r");
  DYNAMOE_CHECK(p, "bench e2e: cannot start ", cmd);
  std::string last, line;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) {
    line += buf;
    if (!line.empty() && line.back() == '\n') {
      if (line.size() > 1) last = line;
      line.clear();
    }
  }
  const int rc = pclose(p);
  DYNAMOE_CHECK(rc == 0 && !last.empty(), "bench e2e: the PyTorch peer failed (exit ", rc, "): ", cmd);
  return nlohmann::json::parse(last).at("samples_per_s").get<double>();
}

}  // namespace

double run_train_bench(const TrainBenchOptions& o, std::ostream& out) {
  DYNAMOE_CHECK(o.steps % o.warmup == 0, "bench e2e: steps (", o.steps, ") must be a multiple of warmup (", o.warmup,
                ")");
  DYNAMOE_CHECK(fs::exists(o.peer_script), "bench e2e: the PyTorch training peer '", o.peer_script, "' does not exist");
  const config::Config cfg = config::load_config(o.config, {});
  const std::string data_dir = (fs::path(cfg.data.dir) / cfg.data.dataset).string();
  const fs::path runs = fs::temp_directory_path() / ("dynamoe-e2e-" + std::to_string(getpid()));
  out << "\n[e2e] training " << o.config << " (" << cfg.model.kind << ", router " << cfg.moe.router.kind() << ", schedule "
      << cfg.moe.layers.schedule.kind() << ") on " << data_dir << ": batch " << cfg.train.batch_size << ", " << o.steps
      << " timed steps after " << o.warmup << ", " << o.threads << " threads, runs alternating\n";
  std::vector<double> ours, theirs;
  for (int r = 0; r < o.rounds; ++r) {
    ours.push_back(dynamoe_samples_per_s(o, runs));
    theirs.push_back(peer_samples_per_s(o, data_dir));
    char row[160];
    std::snprintf(row, sizeof row, "  run %d: dynamoe %8.0f samples/s   pytorch %8.0f samples/s\n", r + 1, ours.back(),
                  theirs.back());
    out << row;
  }
  std::error_code ec;
  fs::remove_all(runs, ec);
  const double ratio = median(ours) / median(theirs);
  char row[160];
  std::snprintf(row, sizeof row, "  median: dynamoe %.0f, pytorch %.0f samples/s; dynamoe / pytorch = %.2f\n",
                median(ours), median(theirs), ratio);
  out << row;
  return ratio;
}

}  // namespace dynamoe::bench
