// dynamoe train: train a model from a config file, or resume a run.
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/dist/launch_env.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::cli {
namespace {

std::string default_run_name(const std::string& config_path) {
  std::string stem = config_path.empty() ? "run" : std::filesystem::path(config_path).stem().string();
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", std::localtime(&t));
  return stem + "-" + buf;
}

int run(const ParsedArgs& a) {
  const bool resume = a.has("resume");
  if (!resume && !a.has("config"))
    throw UsageError("dynamoe train: --config FILE is required (or --resume RUN); see dynamoe train --help");
  if (resume && (a.has("config") || a.has("name") || a.has("overwrite")))
    throw UsageError("dynamoe train: --resume continues a run with its saved config; "
                     "it cannot be combined with --config, --name or --overwrite");
  train::TrainOptions opts;
  opts.overrides = a.all("set");
  config::Config cfg;
  if (!resume) cfg = config::load_config(a.get("config"), opts.overrides);
  opts.name = a.get("name", default_run_name(a.get("config")));
  opts.resume = a.get("resume");
  opts.overwrite = a.has("overwrite");
  opts.live = isatty(1) && !a.has("plain");
  opts.stop_on_signal = true;
  try {
    train::run_training(cfg, opts);
  } catch (const train::Interrupted& e) {
    // One line, from the first process of a distributed run; the exit code of the signal.
    if (dist::launch_env_from_environment().rank == 0) std::cerr << "dynamoe: " << e.what() << std::endl;
    return 128 + e.signal;
  }
  return 0;
}

}  // namespace

Command train_command() {
  return {{"train",
           "train a model from a YAML config (or resume a run)",
           "dynamoe train --config FILE [--set KEY=VALUE]... [--name NAME] [--overwrite] [--plain]\n"
           "       dynamoe train --resume RUN [--set KEY=VALUE]... [--plain]",
           "The run folder runs/<name>/ receives config.yaml (resolved), metrics.csv, metrics.jsonl,\n"
           "checkpoints/step_<N>/ and summary.json. Ctrl-C or SIGTERM stops the run after the current\n"
           "step with a checkpoint (a second Ctrl-C stops it at once); a stopped or killed run\n"
           "continues exactly where its last checkpoint left it with --resume. Config keys: docs/config.md.",
           {{"config", "FILE", "experiment YAML file (configs/*.yaml)"},
            {"set", "KEY=VALUE", "override a config key, e.g. --set train.lr=3e-4", true},
            {"name", "NAME", "run folder name under train.runs_dir (default: <config>-<time>)"},
            {"overwrite", "", "replace an existing run folder of the same name"},
            {"resume", "RUN", "continue a run folder (path, or name under runs/)"},
            {"plain", "", "plain progress lines even on a terminal"}},
           0},
          run};
}

}  // namespace dynamoe::cli
