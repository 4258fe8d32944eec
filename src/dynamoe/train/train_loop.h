#pragma once
// The training loop, the same for every task: resume or create the run folder, then per step
// batch -> forward -> loss (+ auxiliary) -> backward -> clip -> optimizer -> after_step, with
// the logging window, evaluation and checkpoint cadence, metrics rows, progress and summary.
// Every train row holds step, epoch, split, loss, lr, grad_norm, <unit>_per_s and elapsed_s
// (plus aux_loss and per-layer MoE figures when the model has them); every eval row holds step,
// epoch, split, loss and elapsed_s plus the task's figures.
//   ClassifierTask task(cfg);
//   TrainResult r = train_loop(task, run_dir, cfg, opts);
#include <string>

#include "dynamoe/config/config.h"
#include "dynamoe/train/task.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::train {

/// Trains `task` per cfg.train in `run_dir` (resolved by run_training). Exactly resumable:
/// a run resumed from any checkpoint ends bitwise identical to an uninterrupted one.
TrainResult train_loop(Task& task, const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts);

}  // namespace dynamoe::train
