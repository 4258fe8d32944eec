#include "dynamoe/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "dynamoe/data/dataset.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/train/evaluate.h"
#include "dynamoe/train/gradnoise.h"
#include "dynamoe/train/finetune_trainer.h"
#include "dynamoe/train/lm_trainer.h"
#include "dynamoe/train/lr_schedule.h"
#include "dynamoe/train/metrics_log.h"
#include "dynamoe/train/moe_report.h"
#include "dynamoe/train/optimizer.h"
#include "dynamoe/train/progress.h"
#include "dynamoe/train/run_folder.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int set_threads(int64_t threads) {
  int n = threads > 0 ? static_cast<int>(threads) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  return n;
}

TrainResult run_training(const config::Config& cfg_in, const TrainOptions& opts) {
  std::ostream& out = opts.out ? *opts.out : std::cout;
  auto [run_dir, cfg] = resolve_run(cfg_in, opts);
  if (cfg.model.kind == "lm") return run_lm_training(run_dir, cfg, opts);
  if (cfg.model.kind == "finetune") return run_finetune_training(run_dir, cfg, opts);
  const bool resuming = !opts.resume.empty();
  const config::TrainConfig& tc = cfg.train;

  // Everything that can fail on bad input happens before anything is written.
  const int threads = set_threads(tc.threads);
  data::DataSplits data = data::load_data(cfg.data);
  torch::manual_seed(static_cast<uint64_t>(tc.seed));
  models::Classifier model = models::build_model(cfg, data.spec);
  model->train();
  auto opt = make_optimizer(tc, model->parameters());
  data::EpochSampler sampler(data.train.size(), tc.batch_size, static_cast<uint64_t>(tc.seed));
  const int64_t per_epoch = sampler.batches_per_epoch();
  const int64_t total = tc.steps > 0 ? tc.steps : tc.epochs * per_epoch;
  const int64_t eval_every = tc.eval_every > 0 ? tc.eval_every : per_epoch;
  const int64_t ckpt_every = tc.checkpoint_every > 0 ? tc.checkpoint_every : eval_every;
  const std::string ckpt_dir = (fs::path(run_dir) / "checkpoints").string();
  const std::string config_yaml = cfg.to_yaml();

  io::TrainerState state;
  if (resuming) {
    state = resume_from_checkpoint(run_dir, *model, *opt, out);
    DYNAMOE_CHECK(state.epoch == state.step / per_epoch && state.batch_in_epoch == state.step % per_epoch, run_dir,
                  ": data position of the newest checkpoint (epoch ", state.epoch, ", batch ", state.batch_in_epoch,
                  ") does not match step ", state.step, " with ", per_epoch, " batches per epoch");
  } else {
    create_run_folder(run_dir, config_yaml, opts.overwrite);
  }
  MetricsLog metrics(run_dir, resuming ? state.step : -1);

  out << "run " << run_dir << ": " << cfg.model.kind << " with " << model->num_parameters() << " parameters, "
      << data.train.size() << " train / " << data.test.size() << " test examples from " << data.source << ", "
      << total << " steps (" << per_epoch << " per epoch), " << threads << " threads\n";

  Progress progress(out, opts.live, state.step, total, tc.log_every);
  const auto t_start = Clock::now();
  auto t_window = t_start;
  double loss_window = 0, grad_window = 0;
  int64_t window_steps = 0, window_samples = 0;
  double last_rate = 0;
  std::vector<moe::LayerStatsAccumulator> moe_window;
  double aux_window = 0;
  EvalResult last_eval;
  std::string last_ckpt;
  TrainResult result;
  result.run_dir = run_dir;

  auto do_eval = [&](int64_t step) {
    EvalResult ev = evaluate(*model, data.test);
    nlohmann::json row = {{"step", step},
                          {"epoch", static_cast<double>(step) / per_epoch},
                          {"split", "test"},
                          {"loss", ev.loss},
                          {"accuracy", ev.accuracy},
                          {"elapsed_s", std::chrono::duration<double>(Clock::now() - t_start).count()}};
    std::string active;
    if (!ev.moe.empty()) {
      row["moe"] = moe_json(ev.moe);
      row["active_experts"] = mean_active(ev.moe);
      for (const auto& a : ev.moe) active += (active.empty() ? "" : " ") + fmt("%.2f", a.active_mean());
      active = "  active experts/token per layer: " + active;
    }
    metrics.write(row);
    progress.message(str("eval  step ", step, "  test loss ", fmt("%.4f", ev.loss), "  accuracy ",
                         fmt("%.2f%%", 100.0 * ev.accuracy), active));
    last_eval = ev;
    result.test_loss = ev.loss;
    result.test_accuracy = ev.accuracy;
  };
  auto do_checkpoint = [&](int64_t step) {
    last_ckpt = save_run_checkpoint(run_dir, *model, *opt, state, step, per_epoch, config_yaml, tc.keep_checkpoints);
  };

  bool evaluated_last = false;
  while (state.step < total) {
    const int64_t step = state.step;
    const int64_t epoch = step / per_epoch, b = step % per_epoch;
    at::Tensor idx = sampler.batch(epoch, b);                   // [B]
    at::Tensor x = data.train.images.index_select(0, idx);     // [B, C, H, W]
    at::Tensor y = data.train.labels.index_select(0, idx);     // [B]
    const double lr = lr_at(tc, step, total);
    set_lr(*opt, lr);

    models::ModelOutput mo = model->forward(x);
    at::Tensor loss = torch::nn::functional::cross_entropy(mo.logits, y);
    at::Tensor total_loss = mo.aux_loss.defined() ? loss + mo.aux_loss : loss;
    opt->zero_grad();
    total_loss.backward();
    double grad_norm = 0;
    if (tc.grad_clip > 0) {
      grad_norm = torch::nn::utils::clip_grad_norm_(model->parameters(), tc.grad_clip);
    }
    opt->step();
    model->after_step();
    state.step = step + 1;
    accumulate(moe_window, mo.moe_stats);
    if (mo.aux_loss.defined()) aux_window += mo.aux_loss.item<double>();

    const double loss_v = loss.item<double>();
    DYNAMOE_CHECK(std::isfinite(loss_v), "training diverged: loss is ", loss_v, " at step ", state.step,
                  " (lower train.lr or set train.grad_clip)");
    loss_window += loss_v;
    grad_window += grad_norm;
    ++window_steps;
    window_samples += idx.size(0);
    const double dt = std::chrono::duration<double>(Clock::now() - t_window).count();
    const double rate = dt > 0 ? window_samples / dt : 0;
    progress.update(state.step, loss_window / window_steps, lr, rate > 0 ? rate : last_rate);
    if (state.step % tc.log_every == 0 || state.step == total) {
      nlohmann::json row = {{"step", state.step},
                            {"epoch", static_cast<double>(state.step) / per_epoch},
                            {"split", "train"},
                            {"loss", loss_window / window_steps},
                            {"lr", lr},
                            {"grad_norm", tc.grad_clip > 0 ? nlohmann::json(grad_window / window_steps) : nlohmann::json()},
                            {"samples_per_s", rate},
                            {"elapsed_s", std::chrono::duration<double>(Clock::now() - t_start).count()}};
      if (!moe_window.empty()) {
        row["aux_loss"] = aux_window / window_steps;
        row["active_experts"] = mean_active(moe_window);
        row["moe"] = moe_json(moe_window);
      }
      metrics.write(row);
      last_rate = rate;
      moe_window.clear();
      loss_window = grad_window = aux_window = 0;
      window_steps = window_samples = 0;
      t_window = Clock::now();
    }
    if (tc.gradnoise_every > 0 && state.step % tc.gradnoise_every == 0) {
      auto layers = gradient_noise(*model, data.train, std::min(tc.batch_size, data.train.size()),
                                   tc.gradnoise_batches, static_cast<uint64_t>(tc.seed) * 7919u + state.step);
      nlohmann::json rows = nlohmann::json::array();
      for (const auto& L : layers)
        rows.push_back({{"layer", L.layer}, {"parameters", L.parameters}, {"trace_var", L.trace_var},
                        {"mean_grad_sq", L.mean_grad_sq}, {"ratio", L.ratio}});
      metrics.write({{"step", state.step}, {"epoch", static_cast<double>(state.step) / per_epoch},
                     {"split", "gradnoise"}, {"layers", rows}});
    }
    evaluated_last = false;
    if (state.step % eval_every == 0 || state.step == total) {
      do_eval(state.step);
      evaluated_last = true;
    }
    if (state.step % ckpt_every == 0 || state.step == total) do_checkpoint(state.step);
  }
  progress.finish();
  if (!evaluated_last) do_eval(state.step);  // resumed at the very end
  if (last_ckpt.empty()) last_ckpt = io::latest_checkpoint(ckpt_dir);

  result.steps = state.step;
  result.checkpoint = last_ckpt;
  result.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  nlohmann::json summary = {{"run_dir", run_dir},
                            {"checkpoint", last_ckpt},
                            {"steps", result.steps},
                            {"parameters", model->num_parameters()},
                            {"test_loss", result.test_loss},
                            {"test_accuracy", result.test_accuracy},
                            {"train_seconds_this_process", result.seconds},
                            {"threads", threads}};
  if (!last_eval.moe.empty()) {
    summary["moe"] = moe_json(last_eval.moe);
    summary["active_experts"] = mean_active(last_eval.moe);
    out << "MoE layers on the test set:\n" << moe_table(last_eval.moe);
  }
  write_file_atomic((fs::path(run_dir) / "summary.json").string(), summary.dump(2) + "\n");
  out << "done: " << result.steps << " steps, test accuracy " << fmt("%.2f%%", 100.0 * result.test_accuracy)
      << ", checkpoint " << last_ckpt << "\n";
  return result;
}

}  // namespace dynamoe::train
