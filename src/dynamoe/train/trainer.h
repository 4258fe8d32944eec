#pragma once
// Training a model from a config: picks the task (task.h) for model.kind and runs the one
// training loop (train_loop.h) on it, with evaluation, metrics, progress, atomic checkpoints
// and exact resumption.
//   auto r = dynamoe::train::run_training(cfg, {.name = "demo"});
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {

struct TrainOptions {
  std::string name;               ///< run folder name under train.runs_dir ("" : from the config file)
  std::string resume;             ///< run folder (or name) to continue; its saved config is used
  std::vector<std::string> overrides;  ///< --set overrides applied on resume
  bool overwrite = false;         ///< replace an existing run folder of the same name
  std::ostream* out = nullptr;    ///< progress and summary (default: std::cout)
  bool live = false;              ///< live progress line (terminal)
  /// SIGINT / SIGTERM stop the run after the current step with a checkpoint (throwing
  /// Interrupted); a second signal stops it at once. Off: the signals keep their handlers.
  bool stop_on_signal = false;
};

/// A run stopped by SIGINT or SIGTERM (TrainOptions::stop_on_signal) once its checkpoint of the
/// step it reached was written: the message says how to continue it.
class Interrupted : public Error {
 public:
  Interrupted(int signal, const std::string& msg) : Error(msg), signal(signal) {}
  int signal;
};

struct TrainResult {
  std::string run_dir, checkpoint;
  int64_t steps = 0;
  double test_loss = 0, test_accuracy = 0;      ///< language models: val loss (nats/token), 0
  double perplexity = 0, bigram_perplexity = 0;  ///< language models: val perplexity, its bigram baseline
  double seconds = 0;
};

/// Trains per `cfg` (ignored when opts.resume is set). Nothing is written before the config,
/// the data and the model have been checked.
TrainResult run_training(const config::Config& cfg, const TrainOptions& opts);

class Task;
/// The task that trains cfg.model.kind: a language model, fine-tuning, or an image classifier.
std::unique_ptr<Task> make_task(const config::Config& cfg);

/// Launched as one of several processes (`dynamoe launch`, torchrun's variables): joins them
/// (dist::world_group()) and splits the experts per cfg.moe.expert_parallel. Call before the
/// model is built (expert-parallel layers hold their group); nothing in one process. An error
/// when moe.expert_parallel does not divide the processes (`command` names the command in it).
void join_launched_processes(const config::Config& cfg, const std::string& command);

/// With expert parallelism, io::load_state_dict's `may_skip` for the experts other processes
/// hold ("<layer>.experts.<i>.*" names); nullptr otherwise.
std::function<bool(const std::string&)> other_ranks_experts();

/// Sets the intra-op thread count (0: all cores) and returns it.
int set_threads(int64_t threads);

}  // namespace dynamoe::train
