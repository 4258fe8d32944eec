#pragma once
// The run folder shared by every trainer: which folder and configuration a `dynamoe train`
// invocation means, and creating it (refusing to clobber an existing run unless asked).
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <ostream>
#include <string>
#include <utility>

#include "dynamoe/config/config.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::train {

/// The run folder and the configuration to use: the saved one (with opts.overrides) when
/// opts.resume is set, else cfg under train.runs_dir/opts.name.
std::pair<std::string, config::Config> resolve_run(const config::Config& cfg, const TrainOptions& opts);

/// A run folder replaced by --overwrite, kept aside until the new run has written its first
/// checkpoint: commit() deletes it then; destroyed before that (the new run failed), it puts
/// the old run back in place of the new one.
class ReplacedRun {
 public:
  ReplacedRun() = default;
  ReplacedRun(std::string run_dir, std::string kept) : run_dir_(std::move(run_dir)), kept_(std::move(kept)) {}
  ReplacedRun(ReplacedRun&& o) noexcept : run_dir_(std::move(o.run_dir_)), kept_(std::move(o.kept_)) { o.kept_.clear(); }
  ReplacedRun& operator=(ReplacedRun&& o) noexcept;
  ~ReplacedRun();
  /// Where the old run waits ("" when nothing was replaced or it is already gone).
  const std::string& kept() const { return kept_; }
  /// The new run is safe: delete the old one.
  void commit();

 private:
  std::string run_dir_, kept_;
};

/// A new run: creates run_dir and writes config.yaml atomically. An existing folder is an error
/// naming --resume and --overwrite, or with `overwrite` is moved aside (never deleted before
/// the new run has a checkpoint: see ReplacedRun).
ReplacedRun create_run_folder(const std::string& run_dir, const std::string& config_yaml, bool overwrite);

/// Continues a run from its newest checkpoint (run_dir/checkpoints): loads the weights into
/// `model` and the optimizer state into `opt`, restores the CPU RNG, prints "resuming ... from
/// step N" and returns the saved state. An error naming the run when it has no checkpoint yet.
/// Expert parallelism: `may_skip` accepts the weights and optimizer state of experts other
/// ranks hold (a checkpoint holds every expert, whatever the split it was saved with).
io::TrainerState resume_from_checkpoint(const std::string& run_dir, torch::nn::Module& model,
                                        torch::optim::Optimizer& opt, std::ostream& out,
                                        const std::function<bool(const std::string&)>& may_skip = nullptr);

/// Writes checkpoint `step` of a run (atomically, keeping the newest `keep`): first sets
/// state's step, epoch and batch (per_epoch batches an epoch) and RNG. Returns its folder.
std::string save_run_checkpoint(const std::string& run_dir, torch::nn::Module& model, torch::optim::Optimizer& opt,
                                io::TrainerState& state, int64_t step, int64_t per_epoch,
                                const std::string& config_yaml, int64_t keep, const io::CheckpointExtras& extras = {});

}  // namespace dynamoe::train
