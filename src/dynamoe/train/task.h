#pragma once
// A Task is what the one training loop (train_loop.h) trains: it owns the model and the data,
// and says how a batch becomes a loss and what an evaluation measures. The loop owns
// everything else: resume, the optimizer step, clipping, the logging window, evaluation and
// checkpoint cadence, metrics rows, progress and the summary.
//
//   classifier   (classifier_task.h)  images -> cross-entropy; test loss and accuracy
//   lm           (lm_task.h)          token windows -> next-token loss; val perplexity
//   finetune     (finetune_task.h)    adapters on a frozen LM; per-domain perplexity, MC accuracy
//
// A task is built before anything is written: its constructor does every check that can fail on
// bad input (config, data, base model), seeds the RNG and builds the model.
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "dynamoe/io/checkpoint.h"
#include "dynamoe/moe/layer_stats.h"
#include "dynamoe/train/metrics_log.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::train {

/// What one training batch produced.
struct StepOutput {
  at::Tensor loss;                          ///< scalar task loss (logged as `loss`)
  at::Tensor aux_loss;                      ///< scalar added to the loss before backward (undefined: none)
  std::vector<moe::LayerStats> moe_stats;   ///< one per MoE layer (empty: none)
  int64_t items = 0;                        ///< examples or tokens in the batch (for the rate)
};

/// What one evaluation measured.
struct EvalOutput {
  nlohmann::json row;  ///< task fields of the metrics row (split, loss, ...); the loop adds step, epoch, elapsed_s
  std::string line;    ///< the progress line after "eval  step N"
};

/// What the loop knows when a run starts (for the task's header lines).
struct RunInfo {
  std::string run_dir;
  int64_t total_steps = 0;
  int threads = 1;
  bool resuming = false;
};

/// The part of every global batch one process trains on in data-parallel training: rank r of
/// `size` takes rows [n r / size, n (r + 1) / size) of a batch of n rows.
struct Shard {
  int rank = 0;
  int size = 1;
  int64_t begin(int64_t n) const { return n * rank / size; }
  int64_t end(int64_t n) const { return n * (rank + 1) / size; }
  /// This process's rows of `batch` (dim 0).
  at::Tensor rows(const at::Tensor& batch) const;
};

class Task {
 public:
  virtual ~Task() = default;
  /// Set by the loop before the first step (default: the whole batch).
  void set_shard(Shard s) { shard_ = s; }
  const Shard& shard() const { return shard_; }
  /// The whole model: what checkpoints save and resume loads.
  virtual torch::nn::Module& model() = 0;
  /// The parameters the optimizer updates (default: those of model() that require grad).
  virtual std::vector<at::Tensor> trainable();
  /// What the throughput counts: "samples" or "tokens" (rows get `<unit>_per_s`).
  virtual std::string unit() const = 0;
  /// Batches in one pass over the training data.
  virtual int64_t batches_per_epoch() const = 0;
  /// Evaluation interval when train.eval_every = 0.
  virtual int64_t default_eval_every(int64_t total_steps) const = 0;
  /// Checks the resumed state against the task's data (throws on mismatch).
  virtual void check_resume(const io::TrainerState&) const {}
  /// Called once the run folder exists (or was resumed): prints the header, may write rows.
  virtual void start(const RunInfo& run, MetricsLog& metrics, std::ostream& out) = 0;
  /// Forward pass of this process's shard() of training batch `step` (deterministic in the seed
  /// and the step); StepOutput.items counts the shard's examples or tokens.
  virtual StepOutput forward(int64_t step) = 0;
  /// Examples in the global batch of step `step` (all processes together).
  virtual int64_t batch_rows(int64_t step) const = 0;
  /// The smallest batch of any step (the shard of each process must not be empty).
  virtual int64_t smallest_batch() const = 0;
  /// After each optimizer step (e.g. bias balancing of MoE layers).
  virtual void after_step() {}
  /// Extra rows to log after step `step` (e.g. gradient noise); empty: none.
  virtual std::vector<nlohmann::json> extra_rows(int64_t /*step*/) { return {}; }
  /// Evaluates the current model (eval mode, no gradients; the mode is restored).
  virtual EvalOutput evaluate() = 0;
  /// After the last step: adds the task's fields to summary.json and `result`, writes the
  /// task's own files, and prints the closing line.
  virtual void finish(const RunInfo& run, nlohmann::json& summary, TrainResult& result, std::ostream& out) = 0;

 protected:
  Shard shard_;
};

/// A task over token windows (language modelling, fine-tuning): its rate counts tokens, and it
/// evaluates ten times per run unless train.eval_every says otherwise.
class TokenTask : public Task {
 public:
  std::string unit() const override { return "tokens"; }
  int64_t default_eval_every(int64_t total_steps) const override { return std::max<int64_t>(1, total_steps / 10); }
};

/// Sum of numel over tensors.
int64_t count_parameters(const std::vector<at::Tensor>& params);

}  // namespace dynamoe::train
