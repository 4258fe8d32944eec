#include "dynamoe/train/train_loop.h"

#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <set>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/dist/process_group.h"
#include "dynamoe/io/optimizer_state.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/train/eval_shards.h"
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

at::Tensor Shard::rows(const at::Tensor& batch) const {
  if (size == 1) return batch;
  const int64_t n = batch.size(0);
  return batch.slice(0, begin(n), end(n));
}

int64_t count_parameters(const std::vector<at::Tensor>& params) {
  int64_t n = 0;
  for (const auto& p : params) n += p.numel();
  return n;
}

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// What one step measured, over every process of the run.
struct StepFigures {
  double loss = 0, aux = 0, grad_norm = 0;
  bool has_aux = false;
  int64_t items = 0;
};

/// Sums of the training figures between two metrics rows.
struct Window {
  double loss = 0, grad_norm = 0, aux = 0;
  int64_t steps = 0, items = 0;
  bool has_aux = false;
  std::vector<moe::LayerStatsAccumulator> moe;
  Clock::time_point start = Clock::now();

  void add(const StepFigures& f, const std::vector<moe::LayerStats>& stats) {
    loss += f.loss;
    grad_norm += f.grad_norm;
    aux += f.aux;
    has_aux = has_aux || f.has_aux;
    ++steps;
    items += f.items;
    accumulate(moe, stats);
  }
  double rate() const {
    const double dt = seconds_since(start);
    return dt > 0 ? static_cast<double>(items) / dt : 0;
  }
};

/// A stream that writes nothing (the processes other than rank 0).
struct NullStream : std::ostream {
  NullStream() : std::ostream(nullptr) {}
};

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

/// SIGINT and SIGTERM ask the loop to stop after the current step, for its lifetime (the first
/// signal only: SA_RESETHAND gives the second its default action, which ends the process).
class StopSignals {
 public:
  explicit StopSignals(bool on) : on_(on) {
    g_stop_signal = 0;
    if (!on_) return;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    if (!on_) return;
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  bool on_;
  struct sigaction old_int_ {}, old_term_ {};
};

/// The loop's state between steps.
class Loop {
 public:
  Loop(Task& task, const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts)
      : task_(task),
        tc_(cfg.train),
        group_(dist::world_group()),
        rank_(group_ ? group_->rank() : 0),
        out_(rank_ != 0 ? null_out_ : opts.out ? *opts.out : std::cout),
        signals_(opts.stop_on_signal) {
    run_.run_dir = run_dir;
    run_.resuming = !opts.resume.empty();
    run_.threads = torch::get_num_threads();
    params_ = task_.trainable();
    replicated_ = params_;
    opt_ = make_optimizer(tc_, params_);
    per_epoch_ = task_.batches_per_epoch();
    run_.total_steps = tc_.steps > 0 ? tc_.steps : tc_.epochs * per_epoch_;
    eval_every_ = tc_.eval_every > 0 ? tc_.eval_every : task_.default_eval_every(run_.total_steps);
    ckpt_every_ = tc_.checkpoint_every > 0 ? tc_.checkpoint_every : eval_every_;
    if (tc_.warmup_steps >= run_.total_steps && !run_.resuming)
      out_ << "warning: train.warmup_steps = " << tc_.warmup_steps << " is not below the run's " << run_.total_steps
           << " steps: the learning rate rises for the whole run and never reaches train.lr = " << tc_.lr << "\n";
    config_yaml_ = config::Config(cfg).to_yaml();
    if (group_) join_data_parallel();
    if (experts_group_) split_expert_parameters();
    if (run_.resuming) {
      // Every rank reads the checkpoint (the run folder is shared, or the same path on each
      // machine); with expert parallelism it takes the weights and optimizer state of its experts.
      state_ = resume_from_checkpoint(run_dir, task_.model(), *opt_, out_, other_ranks_experts());
      task_.check_resume(state_);
    } else if (rank_ == 0) {
      replaced_ = create_run_folder(run_dir, config_yaml_, opts.overwrite);
      if (!replaced_.kept().empty())
        out_ << "replacing " << run_dir << ": the old run waits in " << replaced_.kept()
             << " until this one's first checkpoint\n";
    }
    if (group_) broadcast_model();
    metrics_ = rank_ == 0 ? std::make_unique<MetricsLog>(run_dir, run_.resuming ? state_.step : -1)
                          : std::make_unique<MetricsLog>();
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
      if (rank_ == 0)
        for (const json& row : task_.extra_rows(s)) metrics_->write(row);
      evaluated_last = s % eval_every_ == 0 || s == total;
      if (evaluated_last) evaluate(/*write=*/true);
      if (s % ckpt_every_ == 0 || s == total) checkpoint();
      if (stop_signal_ && s < total) stop();
    }
    progress_->finish();
    // A run resumed at its very end already logged this evaluation: measure it again for the
    // summary without a second row.
    if (!evaluated_last) evaluate(/*write=*/first_step < total);
    if (rank_ != 0) return {};  // rank 0 writes the summary and the task's files
    if (last_ckpt_.empty()) last_ckpt_ = io::latest_checkpoint((fs::path(run_.run_dir) / "checkpoints").string());
    return summarise(state_.step - first_step);
  }

 private:
  void step() {
    const int64_t step = state_.step;
    const double lr = lr_at(tc_, step, run_.total_steps);
    set_lr(*opt_, lr);
    StepOutput s;
    {
      // Routing statistics and per-token random draws cover the whole global batch.
      const int64_t rows = task_.batch_rows(step);
      dist::BatchScope scope(group_, {task_.shard().begin(rows), task_.shard().end(rows), rows});
      s = task_.forward(step);
    }
    opt_->zero_grad();
    StepFigures f;
    f.has_aux = s.aux_loss.defined();
    f.loss = s.loss.item<double>();
    f.aux = f.has_aux ? s.aux_loss.item<double>() : 0.0;
    f.items = s.items;
    at::Tensor objective = f.has_aux ? s.loss + s.aux_loss : s.loss;
    stop_signal_ = static_cast<int>(g_stop_signal);
    if (group_) {
      // Each rank's losses are means over its shard: weighted by its share of the global batch
      // and summed over ranks, they give the single-process mean (and its gradient). A stop
      // signal on any rank stops every rank after this step.
      std::vector<at::Tensor> sums{torch::tensor({static_cast<double>(s.items), f.loss * s.items, f.aux * s.items,
                                                  static_cast<double>(stop_signal_)},
                                                 torch::kFloat64)};
      group_->allreduce_sum_(sums);
      if (!stop_signal_ && sums[0][3].item<double>() > 0) stop_signal_ = SIGTERM;
      const double global_items = sums[0][0].item<double>();
      f.items = static_cast<int64_t>(global_items);
      f.loss = sums[0][1].item<double>() / global_items;
      f.aux = sums[0][2].item<double>() / global_items;
      objective = objective * (static_cast<double>(s.items) / global_items);
    }
    objective.backward();
    if (group_) {
      sum_gradients(*group_, replicated_);
      if (expert_data_) sum_gradients(*expert_data_, sharded_);
    }
    // The norm is always measured; it clips only when train.grad_clip > 0 (an infinite bound
    // never scales a gradient).
    const double max_norm = tc_.grad_clip > 0 ? tc_.grad_clip : std::numeric_limits<double>::infinity();
    f.grad_norm = experts_group_ ? clip_sharded(max_norm) : torch::nn::utils::clip_grad_norm_(params_, max_norm);
    opt_->step();
    task_.after_step();
    state_.step = step + 1;
    DYNAMOE_CHECK(std::isfinite(f.loss), "training diverged: loss is ", f.loss, " at step ", state_.step,
                  " (lower train.lr or set train.grad_clip)");
    window_.add(f, s.moe_stats);
    items_ += f.items;
    last_lr_ = lr;
    const double rate = window_.rate();
    progress_->update(state_.step, window_.loss / window_.steps, lr, rate > 0 ? rate : last_rate_);
  }

  /// Data parallel: this rank's shard of every batch, and a check that no shard is empty.
  void join_data_parallel() {
    task_.set_shard({group_->rank(), group_->size()});
    const int64_t smallest = task_.smallest_batch();
    if (smallest < group_->size())
      throw ConfigError(str("train.batch_size = ", tc_.batch_size, ": the smallest batch of a step holds ", smallest,
                            " examples, fewer than the ", group_->size(), " processes (each needs at least one)"));
    out_ << "data parallel: " << group_->size() << " processes, each " << task_.shard().end(tc_.batch_size) -
                task_.shard().begin(tc_.batch_size) << " of every " << tc_.batch_size << " examples\n";
  }

  /// Every rank starts from rank 0's parameters and buffers (experts held by one rank start
  /// from the seeded initialisation, the same at any expert-parallel size).
  void broadcast_model() {
    std::vector<at::Tensor> tensors;
    torch::NoGradGuard no_grad;
    for (const auto& p : task_.model().parameters())
      if (!sharded_ids_.count(p.unsafeGetTensorImpl())) tensors.push_back(p);
    for (const auto& b : task_.model().buffers()) tensors.push_back(b);
    for (const at::Tensor& t : tensors)
      DYNAMOE_CHECK(t.is_contiguous(), "data parallel: a parameter or buffer of the model is not contiguous");
    group_->broadcast_(tensors, 0);
  }

  /// Sums the ranks' (share-weighted) gradients of `params` over `g` in place. A parameter that
  /// no rank's batch reached keeps no gradient, as in one process (the optimizer then skips it).
  static void sum_gradients(dist::ProcessGroup& g, std::vector<at::Tensor>& params) {
    std::vector<at::Tensor> bufs;
    at::Tensor reached = torch::zeros({static_cast<int64_t>(params.size())}, torch::kFloat32);
    auto r = reached.accessor<float, 1>();
    for (size_t i = 0; i < params.size(); ++i) {
      at::Tensor& grad = params[i].mutable_grad();
      if (grad.defined()) r[static_cast<int64_t>(i)] = 1;
      else grad = torch::zeros_like(params[i]);
      if (!grad.is_contiguous()) grad = grad.contiguous();
      bufs.push_back(grad);
    }
    bufs.push_back(reached);
    g.allreduce_sum_(bufs);
    for (size_t i = 0; i < params.size(); ++i)
      if (r[static_cast<int64_t>(i)] == 0) params[i].mutable_grad() = at::Tensor();
  }

  /// Expert parallelism: the parameters of the experts this rank holds (summed over the ranks
  /// holding the same experts) apart from those every rank holds (summed over all).
  void split_expert_parameters() {
    if (tc_.gradnoise_every > 0)
      throw ConfigError("train.gradnoise_every: gradient noise is measured in one process; it does not run with "
                        "moe.expert_parallel > 1");
    replicated_.clear();
    for (const auto& m : task_.model().modules(/*include_self=*/true)) {
      auto* layer = dynamic_cast<moe::MoELayerImpl*>(m.get());
      if (!layer || !layer->options().expert_group) continue;
      const auto [first, last] = layer->local_experts();
      for (int64_t i = first; i < last; ++i)
        for (const auto& p : layer->experts()[static_cast<size_t>(i)]->parameters())
          sharded_ids_.insert(p.unsafeGetTensorImpl());
    }
    for (const auto& p : params_) (sharded_ids_.count(p.unsafeGetTensorImpl()) ? sharded_ : replicated_).push_back(p);
    for (const auto& np : task_.model().named_parameters())
      if (sharded_ids_.count(np.value().unsafeGetTensorImpl())) sharded_named_.emplace_back(np.key(), np.value());
    out_ << "expert parallel: " << experts_group_->size() << " processes share each layer's experts ("
         << count_parameters(sharded_) << " expert parameters here, " << count_parameters(replicated_)
         << " on every process)\n";
  }

  /// clip_grad_norm_ over a model whose experts are split: the norm counts every expert once.
  double clip_sharded(double max_norm) {
    auto sum_sq = [](const std::vector<at::Tensor>& ps) {
      double s = 0;
      for (const auto& p : ps)
        if (p.grad().defined()) s += p.grad().to(torch::kDouble).square().sum().item<double>();
      return s;
    };
    std::vector<at::Tensor> shard{torch::tensor({sum_sq(sharded_)}, torch::kFloat64)};
    experts_group_->allreduce_sum_(shard);
    const double norm = std::sqrt(sum_sq(replicated_) + shard[0].item<double>());
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
      torch::NoGradGuard no_grad;
      for (auto& p : params_)
        if (p.grad().defined()) p.mutable_grad().mul_(coef);
    }
    return norm;
  }

  /// Expert parallelism: rank 0 collects the other ranks' experts and their optimizer state
  /// (under their global names) for the checkpoint it writes.
  io::CheckpointExtras gather_expert_shards() {
    io::CheckpointExtras extras;
    if (!experts_group_) return extras;
    io::NamedTensors mine;
    std::set<std::string> my_experts;
    for (const auto& [name, t] : sharded_named_) {
      mine.emplace_back(name, t.detach());
      my_experts.insert(name);
    }
    // The moments of this rank's experts (the optimizer's other parameters are on every rank).
    const io::NamedTensors all_state = io::optimizer_state_tensors(*opt_, io::parameter_names(task_.model()));
    io::NamedTensors my_state;
    for (const auto& [name, t] : all_state)
      if (my_experts.count(name.substr(0, name.rfind('.')))) my_state.emplace_back(name, t);
    const std::vector<std::string> weights = group_->gather_bytes(io::safetensors_bytes(mine, {}));
    const std::vector<std::string> states = group_->gather_bytes(io::safetensors_bytes(my_state, {}));
    if (rank_ != 0) return extras;
    // Ranks that hold the same experts (world = D x P) send the same ones: each is kept once.
    std::set<std::string> have, have_state;
    for (const auto& [name, t] : io::state_dict(task_.model())) have.insert(name);
    for (const auto& [name, t] : all_state) have_state.insert(name);
    for (size_t r = 1; r < weights.size(); ++r) {
      io::SafetensorsFile f = io::parse_safetensors(weights[r], str("rank ", r, "'s experts"));
      for (const std::string& name : f.names)
        if (have.insert(name).second) extras.tensors.emplace_back(name, f.tensors.at(name));
      io::SafetensorsFile o = io::parse_safetensors(states[r], str("rank ", r, "'s optimizer state"));
      for (const std::string& name : o.names)
        if (have_state.insert(name).second) extras.optimizer_tensors.emplace_back(name, o.tensors.at(name));
    }
    return extras;
  }

  /// After a stop signal: the step reached is logged and checkpointed, then Interrupted says
  /// how to continue.
  [[noreturn]] void stop() {
    if (window_.steps > 0) log_window();
    if (state_.step % ckpt_every_ != 0) checkpoint();
    progress_->finish();
    const std::string name = stop_signal_ == SIGINT ? "SIGINT" : stop_signal_ == SIGTERM ? "SIGTERM" : str("signal ", stop_signal_);
    throw Interrupted(stop_signal_, str("stopped by ", name, " after step ", state_.step, " of ", run_.total_steps,
                                        "; its checkpoint is written: continue with `dynamoe train --resume ",
                                        run_.run_dir, "`"));
  }

  void log_window() {
    if (group_ && !window_.moe.empty()) sum_moe_stats(*group_, window_.moe);
    const Window& w = window_;
    const double rate = w.rate();
    json row = {{"step", state_.step},
                {"epoch", epoch()},
                {"split", "train"},
                {"loss", w.loss / w.steps},
                {"lr", last_lr_},
                {"grad_norm", w.grad_norm / w.steps},
                {task_.unit() + "_per_s", rate},
                {"elapsed_s", elapsed()}};
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
    row["elapsed_s"] = elapsed();
    metrics_->write(row);
    progress_->message(str("eval  step ", state_.step, "  ", ev.line));
  }

  void checkpoint() {
    const io::CheckpointExtras extras = gather_expert_shards();
    if (rank_ != 0) return;  // rank 0 writes what every rank holds, and the gathered shards
    last_ckpt_ = save_run_checkpoint(run_.run_dir, task_.model(), *opt_, state_, state_.step, per_epoch_,
                                     config_yaml_, tc_.keep_checkpoints, extras);
    replaced_.commit();  // the new run is safe on disk: the run it replaced can go
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

  /// Seconds of training of the whole run: this process's plus what the run had logged before a resume.
  double elapsed() const { return metrics_->elapsed_before() + seconds_since(t_start_); }

  double epoch() const { return static_cast<double>(state_.step) / static_cast<double>(per_epoch_); }

  Task& task_;
  const config::TrainConfig& tc_;
  dist::ProcessGroup* group_;  ///< the other processes of a data-parallel run (nullptr: alone)
  dist::ProcessGroup* experts_group_ = dist::expert_group();    ///< expert parallelism: who splits the experts
  dist::ProcessGroup* expert_data_ = dist::expert_data_group();  ///< ... and who holds the same ones
  std::set<const void*> sharded_ids_;                  ///< TensorImpls of the experts held here
  std::vector<at::Tensor> replicated_, sharded_;      ///< params_ split by who holds them
  io::NamedTensors sharded_named_;
  int rank_;
  NullStream null_out_;
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
  ReplacedRun replaced_;  ///< --overwrite: the old run, until this one's first checkpoint
  double last_lr_ = 0, last_rate_ = 0;
  StopSignals signals_;  ///< SIGINT / SIGTERM -> stop_signal_ (opts.stop_on_signal)
  int stop_signal_ = 0;  ///< set after a step when a rank received a stop signal
  Clock::time_point t_start_ = Clock::now();
};

}  // namespace

TrainResult train_loop(Task& task, const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts) {
  Loop loop(task, run_dir, cfg, opts);
  return loop.run();
}

}  // namespace dynamoe::train
