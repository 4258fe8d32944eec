#include "dynamoe/train/lm_trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "dynamoe/data/corpus.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/lm/bigram.h"
#include "dynamoe/models/lm/transformer.h"
#include "dynamoe/train/lm_data.h"
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

namespace {

/// Bytes of text per token of the val split, from the corpus meta (0 when unknown).
double val_bytes_per_token(const data::TokenCorpus& c) {
  try {
    const auto& v = c.meta.at("splits").at("val");
    const double tokens = v.at("tokens").get<double>(), bytes = v.at("text_bytes").get<double>();
    return tokens > 0 ? bytes / tokens : 0.0;
  } catch (const std::exception&) {
    return 0.0;
  }
}

}  // namespace

std::string lm_corpus_dir(const config::DataConfig& cfg) {
  const std::string dir = data::corpus_dir(cfg.dir, cfg.dataset, cfg.tokenizer);
  DYNAMOE_CHECK(fs::exists(fs::path(dir) / "meta.json"), "text corpus '", cfg.dataset, "' with the ", cfg.tokenizer,
                " tokenizer is not in ", dir, ": run `dynamoe data fetch ", cfg.dataset, " --tokenizer ",
                cfg.tokenizer, (cfg.dir == "data" ? "" : " --data-dir " + cfg.dir), "` first");
  return dir;
}

std::unique_ptr<text::Tokenizer> lm_tokenizer(const config::DataConfig& cfg) {
  const std::string dir = (fs::path(cfg.dir) / "gpt2").string();
  if (cfg.tokenizer == "gpt2")
    DYNAMOE_CHECK(fs::exists(fs::path(dir) / "encoder.json"), "the GPT-2 vocabulary is not in ", dir,
                  ": run `dynamoe data fetch gpt2", (cfg.dir == "data" ? "" : " --data-dir " + cfg.dir), "` first");
  return text::make_tokenizer(cfg.tokenizer, dir);
}

LMCheckpoint load_lm_checkpoint(const std::string& checkpoint_dir, const std::vector<std::string>& overrides) {
  LMCheckpoint c;
  c.dir = checkpoint_dir;
  const std::string cfg_path = (fs::path(checkpoint_dir) / "config.yaml").string();
  c.cfg = config::parse_config(read_file(cfg_path), cfg_path, overrides);
  DYNAMOE_CHECK(c.cfg.model.kind == "lm", checkpoint_dir, ": holds a '", c.cfg.model.kind,
                "' model, not a language model (model.kind = lm)");
  c.tokenizer = lm_tokenizer(c.cfg.data);
  c.model = models::lm::TransformerLM(c.cfg, c.tokenizer->vocab_size());
  io::load_state_dict(*c.model, (fs::path(checkpoint_dir) / "model.safetensors").string());
  c.model->eval();
  c.step = io::load_trainer_state(checkpoint_dir).step;
  return c;
}

TrainResult run_lm_training(const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts) {
  std::ostream& out = opts.out ? *opts.out : std::cout;
  const bool resuming = !opts.resume.empty();
  const config::TrainConfig& tc = cfg.train;
  const int64_t T = cfg.lm.context, B = tc.batch_size;

  // Everything that can fail on bad input happens before anything is written.
  const int threads = set_threads(tc.threads);
  data::TokenCorpus corpus = data::open_token_corpus(lm_corpus_dir(cfg.data));
  torch::manual_seed(static_cast<uint64_t>(tc.seed));
  models::lm::TransformerLM model(cfg, corpus.vocab_size);
  model->train();
  auto opt = make_optimizer(tc, model->parameters());
  const int64_t per_epoch = std::max<int64_t>(1, corpus.train.size() / (B * T));
  const int64_t total = tc.steps > 0 ? tc.steps : tc.epochs * per_epoch;
  const int64_t eval_every = tc.eval_every > 0 ? tc.eval_every : std::max<int64_t>(1, total / 10);
  const int64_t ckpt_every = tc.checkpoint_every > 0 ? tc.checkpoint_every : eval_every;
  const std::string ckpt_dir = (fs::path(run_dir) / "checkpoints").string();
  const std::string config_yaml = config::Config(cfg).to_yaml();
  const double bytes_per_token = val_bytes_per_token(corpus);

  io::TrainerState state;
  if (resuming) {
    state = resume_from_checkpoint(run_dir, *model, *opt, out);
  } else {
    create_run_folder(run_dir, config_yaml, opts.overwrite);
  }
  MetricsLog metrics(run_dir, resuming ? state.step : -1);

  const auto t_bigram = Clock::now();
  models::lm::BigramLM bigram(corpus.train.data(), corpus.train.size(), corpus.vocab_size);
  out << "run " << run_dir << ": lm with " << model->num_parameters() << " parameters ("
      << model->num_non_embedding_parameters() << " without embeddings), " << cfg.lm.layers << " blocks";
  if (!model->experts_per_moe_block().empty()) {
    out << ", experts per MoE block:";
    for (int64_t e : model->experts_per_moe_block()) out << " " << e;
  }
  out << "\n  data " << corpus.dir << ": " << corpus.train.size() << " train / " << corpus.val.size()
      << " val tokens (" << corpus.tokenizer << ", vocab " << corpus.vocab_size << "); " << total << " steps of "
      << B << " x " << T << " tokens, " << threads << " threads; bigram baseline fitted in "
      << fmt("%.1f s", std::chrono::duration<double>(Clock::now() - t_bigram).count()) << "\n";

  Progress progress(out, opts.live, state.step, total, tc.log_every, "tokens");
  const auto t_start = Clock::now();
  auto t_window = t_start;
  double loss_window = 0, grad_window = 0, aux_window = 0, last_rate = 0;
  int64_t window_steps = 0, window_tokens = 0;
  std::vector<moe::LayerStatsAccumulator> moe_window;
  LMEvalResult last_eval;
  std::string last_ckpt;
  TrainResult result;
  result.run_dir = run_dir;

  auto do_eval = [&](int64_t step) {
    LMEvalResult ev = evaluate_lm(*model, corpus.val, T, B, cfg.lm.eval_tokens, bytes_per_token, &bigram);
    nlohmann::json row = {{"step", step},
                          {"epoch", static_cast<double>(step) / per_epoch},
                          {"split", "val"},
                          {"loss", ev.loss},
                          {"perplexity", ev.perplexity},
                          {"bits_per_byte", ev.bits_per_byte},
                          {"bigram_perplexity", ev.bigram_perplexity},
                          {"tokens", ev.tokens},
                          {"elapsed_s", std::chrono::duration<double>(Clock::now() - t_start).count()}};
    std::string active;
    if (!ev.moe.empty()) {
      row["moe"] = moe_json(ev.moe);
      row["active_experts"] = mean_active(ev.moe);
      for (const auto& a : ev.moe) active += (active.empty() ? "" : " ") + fmt("%.2f", a.active_mean());
      active = "  active experts/token per MoE block: " + active;
    }
    metrics.write(row);
    progress.message(str("eval  step ", step, "  val loss ", fmt("%.4f", ev.loss), "  perplexity ",
                         fmt("%.2f", ev.perplexity), " (bigram ", fmt("%.2f", ev.bigram_perplexity), ")",
                         ev.bits_per_byte > 0 ? "  bits/byte " + fmt("%.3f", ev.bits_per_byte) : "", active));
    last_eval = ev;
  };
  auto do_checkpoint = [&](int64_t step) {
    last_ckpt = save_run_checkpoint(run_dir, *model, *opt, state, step, per_epoch, config_yaml, tc.keep_checkpoints);
  };

  bool evaluated_last = false;
  while (state.step < total) {
    const int64_t step = state.step;
    auto [x, y] = lm_train_batch(corpus.train, B, T, static_cast<uint64_t>(tc.seed), step);  // [B, T] each
    const double lr = lr_at(tc, step, total);
    set_lr(*opt, lr);
    models::lm::LMOutput mo = model->forward(x);
    at::Tensor loss = at::cross_entropy_loss(mo.logits.reshape({B * T, -1}), y.reshape({-1}));
    at::Tensor total_loss = mo.aux_loss.defined() ? loss + mo.aux_loss : loss;
    opt->zero_grad();
    total_loss.backward();
    double grad_norm = 0;
    if (tc.grad_clip > 0) grad_norm = torch::nn::utils::clip_grad_norm_(model->parameters(), tc.grad_clip);
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
    window_tokens += B * T;
    const double dt = std::chrono::duration<double>(Clock::now() - t_window).count();
    const double rate = dt > 0 ? window_tokens / dt : 0;
    progress.update(state.step, loss_window / window_steps, lr, rate > 0 ? rate : last_rate);
    if (state.step % tc.log_every == 0 || state.step == total) {
      nlohmann::json row = {{"step", state.step},
                            {"epoch", static_cast<double>(state.step) / per_epoch},
                            {"split", "train"},
                            {"loss", loss_window / window_steps},
                            {"lr", lr},
                            {"grad_norm", tc.grad_clip > 0 ? nlohmann::json(grad_window / window_steps) : nlohmann::json()},
                            {"tokens_per_s", rate},
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
      window_steps = window_tokens = 0;
      t_window = Clock::now();
    }
    evaluated_last = false;
    if (state.step % eval_every == 0 || state.step == total) {
      do_eval(state.step);
      evaluated_last = true;
    }
    if (state.step % ckpt_every == 0 || state.step == total) do_checkpoint(state.step);
  }
  progress.finish();
  if (!evaluated_last) do_eval(state.step);
  if (last_ckpt.empty()) last_ckpt = io::latest_checkpoint(ckpt_dir);

  const double seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  result.steps = state.step;
  result.checkpoint = last_ckpt;
  result.seconds = seconds;
  result.test_loss = last_eval.loss;
  result.perplexity = last_eval.perplexity;
  result.bigram_perplexity = last_eval.bigram_perplexity;
  nlohmann::json summary = {{"run_dir", run_dir},
                            {"checkpoint", last_ckpt},
                            {"steps", result.steps},
                            {"parameters", model->num_parameters()},
                            {"non_embedding_parameters", model->num_non_embedding_parameters()},
                            {"val_loss", last_eval.loss},
                            {"val_perplexity", last_eval.perplexity},
                            {"val_bits_per_byte", last_eval.bits_per_byte},
                            {"val_tokens", last_eval.tokens},
                            {"bigram_val_perplexity", last_eval.bigram_perplexity},
                            {"train_seconds_this_process", seconds},
                            {"train_tokens_per_s", last_rate},
                            {"threads", threads}};
  if (!last_eval.moe.empty()) {
    summary["moe"] = moe_json(last_eval.moe);
    summary["active_experts"] = mean_active(last_eval.moe);
    out << "MoE blocks on the val split:\n" << moe_table(last_eval.moe);
  }
  write_file_atomic((fs::path(run_dir) / "summary.json").string(), summary.dump(2) + "\n");
  out << "done: " << result.steps << " steps, val perplexity " << fmt("%.2f", last_eval.perplexity)
      << " vs bigram " << fmt("%.2f", last_eval.bigram_perplexity) << " on the same " << last_eval.tokens
      << " val tokens";
  if (last_eval.bits_per_byte > 0) out << " (" << fmt("%.3f", last_eval.bits_per_byte) << " bits/byte)";
  out << ", " << fmt("%.0f", last_rate) << " tokens/s, checkpoint " << last_ckpt << "\n";
  return result;
}

}  // namespace dynamoe::train
