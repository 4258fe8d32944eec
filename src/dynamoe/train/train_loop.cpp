#include "dynamoe/train/train_loop.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>

#include "dynamoe/train/lr_schedule.h"
#include "dynamoe/train/moe_report.h"
#include "dynamoe/train/optimizer.h"
#include "dynamoe/train/progress.h"
#include "dynamoe/train/run_folder.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::vector<at::Tensor> Task::trainable() {
  std::vector<at::Tensor> out;
  for (const auto& p : model().parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

int64_t count_parameters(const std::vector<at::Tensor>& params) {
  int64_t n = 0;
  for (const auto& p : params) n += p.numel();
  return n;
}

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// Sums of the training figures between two metrics rows.
struct Window {
  double loss = 0, grad_norm = 0, aux = 0;
  int64_t steps = 0, items = 0;
  bool has_aux = false;
  std::vector<moe::LayerStatsAccumulator> moe;
  Clock::time_point start = Clock::now();

  void add(double loss_v, double grad, const StepOutput& s) {
    loss += loss_v;
    grad_norm += grad;
    if (s.aux_loss.defined()) {
      aux += s.aux_loss.item<double>();
      has_aux = true;
    }
    ++steps;
    items += s.items;
    accumulate(moe, s.moe_stats);
  }
  double rate() const {
    const double dt = seconds_since(start);
    return dt > 0 ? static_cast<double>(items) / dt : 0;
  }
};

/// The loop's state between steps.
class Loop {
 public:
  Loop(Task& task, const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts)
      : task_(task), tc_(cfg.train), out_(opts.out ? *opts.out : std::cout) {
    run_.run_dir = run_dir;
    run_.resuming = !opts.resume.empty();
    run_.threads = torch::get_num_threads();
    params_ = task_.trainable();
    opt_ = make_optimizer(tc_, params_);
    per_epoch_ = task_.batches_per_epoch();
    run_.total_steps = tc_.steps > 0 ? tc_.steps : tc_.epochs * per_epoch_;
    eval_every_ = tc_.eval_every > 0 ? tc_.eval_every : task_.default_eval_every(run_.total_steps);
    ckpt_every_ = tc_.checkpoint_every > 0 ? tc_.checkpoint_every : eval_every_;
    config_yaml_ = config::Config(cfg).to_yaml();
    if (run_.resuming) {
      state_ = resume_from_checkpoint(run_dir, task_.model(), *opt_, out_);
      task_.check_resume(state_);
    } else {
      create_run_folder(run_dir, config_yaml_, opts.overwrite);
    }
    metrics_ = std::make_unique<MetricsLog>(run_dir, run_.resuming ? state_.step : -1);
    task_.start(run_, *metrics_, out_);
    progress_ = std::make_unique<Progress>(out_, opts.live, state_.step, run_.total_steps, tc_.log_every, task_.unit());
    t_start_ = window_.start = Clock::now();
  }

  TrainResult run() {
    const int64_t total = run_.total_steps, first_step = state_.step;
    bool evaluated_last = false;
    while (state_.step < total) {
      step();
      const int64_t s = state_.step;
      if (s % tc_.log_every == 0 || s == total) log_window();
      for (const json& row : task_.extra_rows(s)) metrics_->write(row);
      evaluated_last = s % eval_every_ == 0 || s == total;
      if (evaluated_last) evaluate(/*write=*/true);
      if (s % ckpt_every_ == 0 || s == total) checkpoint();
    }
    progress_->finish();
    // A run resumed at its very end already logged this evaluation: measure it again for the
    // summary without a second row.
    if (!evaluated_last) evaluate(/*write=*/first_step < total);
    if (last_ckpt_.empty()) last_ckpt_ = io::latest_checkpoint((fs::path(run_.run_dir) / "checkpoints").string());
    return summarise(state_.step - first_step);
  }

 private:
  void step() {
    const int64_t step = state_.step;
    const double lr = lr_at(tc_, step, run_.total_steps);
    set_lr(*opt_, lr);
    StepOutput s = task_.forward(step);
    opt_->zero_grad();
    (s.aux_loss.defined() ? s.loss + s.aux_loss : s.loss).backward();
    // The norm is always measured; it clips only when train.grad_clip > 0 (an infinite bound
    // never scales a gradient).
    const double max_norm = tc_.grad_clip > 0 ? tc_.grad_clip : std::numeric_limits<double>::infinity();
    const double grad_norm = torch::nn::utils::clip_grad_norm_(params_, max_norm);
    opt_->step();
    task_.after_step();
    state_.step = step + 1;
    const double loss_v = s.loss.item<double>();
    DYNAMOE_CHECK(std::isfinite(loss_v), "training diverged: loss is ", loss_v, " at step ", state_.step,
                  " (lower train.lr or set train.grad_clip)");
    window_.add(loss_v, grad_norm, s);
    items_ += s.items;
    last_lr_ = lr;
    const double rate = window_.rate();
    progress_->update(state_.step, window_.loss / window_.steps, lr, rate > 0 ? rate : last_rate_);
  }

  void log_window() {
    const Window& w = window_;
    const double rate = w.rate();
    json row = {{"step", state_.step},
                {"epoch", epoch()},
                {"split", "train"},
                {"loss", w.loss / w.steps},
                {"lr", last_lr_},
                {"grad_norm", w.grad_norm / w.steps},
                {task_.unit() + "_per_s", rate},
                {"elapsed_s", seconds_since(t_start_)}};
    if (w.has_aux) row["aux_loss"] = w.aux / w.steps;
    if (!w.moe.empty()) {
      row["active_experts"] = mean_active(w.moe);
      row["moe"] = moe_json(w.moe);
    }
    metrics_->write(row);
    last_rate_ = rate;
    window_ = Window();
  }

  void evaluate(bool write) {
    EvalOutput ev = task_.evaluate();
    if (!write) return;
    json row = {{"step", state_.step}, {"epoch", epoch()}};
    row.update(ev.row);
    row["elapsed_s"] = seconds_since(t_start_);
    metrics_->write(row);
    progress_->message(str("eval  step ", state_.step, "  ", ev.line));
  }

  void checkpoint() {
    last_ckpt_ = save_run_checkpoint(run_.run_dir, task_.model(), *opt_, state_, state_.step, per_epoch_,
                                     config_yaml_, tc_.keep_checkpoints);
  }

  TrainResult summarise(int64_t steps_this_process) {
    TrainResult result;
    result.run_dir = run_.run_dir;
    result.steps = state_.step;
    result.checkpoint = last_ckpt_;
    result.seconds = seconds_since(t_start_);
    json summary = {{"run_dir", run_.run_dir},
                    {"checkpoint", last_ckpt_},
                    {"steps", result.steps},
                    {"parameters", count_parameters(params_)},
                    {"train_seconds_this_process", result.seconds},
                    {"steps_this_process", steps_this_process},
                    {"threads", run_.threads}};
    summary["train_" + task_.unit() + "_per_s"] = items_ > 0 ? static_cast<double>(items_) / result.seconds : 0.0;
    task_.finish(run_, summary, result, out_);
    write_file_atomic((fs::path(run_.run_dir) / "summary.json").string(), summary.dump(2) + "\n");
    return result;
  }

  double epoch() const { return static_cast<double>(state_.step) / static_cast<double>(per_epoch_); }

  Task& task_;
  const config::TrainConfig& tc_;
  std::ostream& out_;
  RunInfo run_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  int64_t per_epoch_ = 1, eval_every_ = 1, ckpt_every_ = 1, items_ = 0;
  std::string config_yaml_, last_ckpt_;
  io::TrainerState state_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<Progress> progress_;
  Window window_;
  double last_lr_ = 0, last_rate_ = 0;
  Clock::time_point t_start_ = Clock::now();
};

}  // namespace

TrainResult train_loop(Task& task, const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts) {
  Loop loop(task, run_dir, cfg, opts);
  return loop.run();
}

}  // namespace dynamoe::train
