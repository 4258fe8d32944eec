#include "dynamoe/train/finetune_trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "dynamoe/adapters/adapter_file.h"
#include "dynamoe/adapters/lora.h"
#include "dynamoe/adapters/lora_mixture.h"
#include "dynamoe/data/corpus.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/eval/continuation_task.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/train/lm_data.h"
#include "dynamoe/train/lm_trainer.h"
#include "dynamoe/train/lr_schedule.h"
#include "dynamoe/train/metrics_log.h"
#include "dynamoe/train/optimizer.h"
#include "dynamoe/train/progress.h"
#include "dynamoe/train/run_folder.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::vector<std::string> finetune_domains(const config::Config& cfg) {
  std::vector<std::string> out;
  const std::string& d = cfg.finetune.domains;
  if (d.empty()) return {cfg.data.dataset};
  size_t start = 0;
  while (start <= d.size()) {
    const size_t comma = std::min(d.find(',', start), d.size());
    out.push_back(d.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

namespace {

struct Domain {
  std::string name;
  data::TokenCorpus corpus;
  std::vector<eval::MultipleChoiceItem> mc;
};

/// One domain's evaluation.
struct DomainEval {
  double loss = 0, perplexity = 0;
  int64_t tokens = 0;
  eval::Accuracy mc;
  std::vector<std::pair<std::string, adapters::MixtureTally>> tallies;  ///< per mixture (empty for LoRA)
};

DomainEval evaluate_domain(models::lm::TransformerLMImpl& model, const Domain& d, const text::Tokenizer& tok, int64_t T,
                           int64_t B, int64_t eval_tokens) {
  DomainEval r;
  adapters::set_tallying(model, true);
  const LMEvalResult ev = evaluate_lm(model, d.corpus.val, T, B, eval_tokens, 0.0);
  r.tallies = adapters::mixture_tallies(model);
  adapters::set_tallying(model, false);
  r.loss = ev.loss;
  r.perplexity = ev.perplexity;
  r.tokens = ev.tokens;
  if (!d.mc.empty()) {
    const bool was_training = model.is_training();
    model.eval();
    const auto res = eval::score_multiple_choice(
        d.mc, tok, [&](const at::Tensor& ids) { return model.forward(ids).logits; }, T);
    if (was_training) model.train();
    r.mc = {static_cast<int64_t>(d.mc.size()), res.accuracy, res.accuracy_norm};
  }
  return r;
}

/// Mutual information between domain and expert over the assignments, / log(domains): 0 when
/// every domain spreads over the experts alike, 1 when the experts separate the domains.
double routing_mi(const std::vector<std::vector<double>>& counts) {
  const size_t D = counts.size();
  if (D < 2) return 0;
  const size_t E = counts[0].size();
  double total = 0;
  std::vector<double> pd(D, 0), pe(E, 0);
  for (size_t d = 0; d < D; ++d)
    for (size_t e = 0; e < E; ++e) {
      pd[d] += counts[d][e];
      pe[e] += counts[d][e];
      total += counts[d][e];
    }
  if (total <= 0) return 0;
  double mi = 0;
  for (size_t d = 0; d < D; ++d)
    for (size_t e = 0; e < E; ++e) {
      const double p = counts[d][e] / total;
      if (p > 0) mi += p * std::log(p * total * total / (pd[d] * pe[e]));
    }
  return mi / std::log(static_cast<double>(D));
}

/// The evaluation of every domain, aggregated: metrics row, summary fields and a log line.
struct FullEval {
  std::vector<DomainEval> domains;
  double loss = 0, perplexity = 0, mc_accuracy = 0, mc_accuracy_norm = 0;
  json routing;  ///< null for LoRA
};

FullEval evaluate_all(models::lm::TransformerLMImpl& model, const std::vector<Domain>& domains, const text::Tokenizer& tok,
                      int64_t T, int64_t B, int64_t eval_tokens) {
  FullEval f;
  int64_t items = 0;
  for (const Domain& d : domains) {
    f.domains.push_back(evaluate_domain(model, d, tok, T, B, eval_tokens));
    const DomainEval& e = f.domains.back();
    f.loss += e.loss / static_cast<double>(domains.size());
    f.mc_accuracy += e.mc.accuracy * static_cast<double>(e.mc.items);
    f.mc_accuracy_norm += e.mc.accuracy_norm * static_cast<double>(e.mc.items);
    items += e.mc.items;
  }
  f.perplexity = std::exp(f.loss);
  if (items > 0) {
    f.mc_accuracy /= static_cast<double>(items);
    f.mc_accuracy_norm /= static_cast<double>(items);
  }
  if (f.domains.empty() || f.domains[0].tallies.empty()) return f;
  json layers = json::array();
  double all_sum = 0, mi_sum = 0;
  const size_t L = f.domains[0].tallies.size();
  for (size_t l = 0; l < L; ++l) {
    adapters::MixtureTally total;
    json shares = json::object(), all_by_domain = json::object();
    std::vector<std::vector<double>> counts;
    for (size_t d = 0; d < domains.size(); ++d) {
      const auto& t = f.domains[d].tallies[l].second;
      total.add(t);
      shares[domains[d].name] = t.shares();
      all_by_domain[domains[d].name] = t.all_fraction();
      counts.push_back(t.expert_tokens);
    }
    const double mi = routing_mi(counts);
    all_sum += total.all_fraction();
    mi_sum += mi;
    layers.push_back({{"name", f.domains[0].tallies[l].first},
                      {"all_experts_fraction", total.all_fraction()},
                      {"all_experts_fraction_by_domain", all_by_domain},
                      {"active_mean", total.active_mean()},
                      {"shares", shares},
                      {"routing_mi", mi}});
  }
  f.routing = {{"all_experts_fraction", all_sum / static_cast<double>(L)},
               {"routing_mi", mi_sum / static_cast<double>(L)},
               {"layers", layers}};
  return f;
}

json domains_json(const FullEval& f, const std::vector<Domain>& domains) {
  json j = json::object();
  for (size_t d = 0; d < domains.size(); ++d) {
    const DomainEval& e = f.domains[d];
    j[domains[d].name] = {{"val_loss", e.loss},
                          {"val_perplexity", e.perplexity},
                          {"val_tokens", e.tokens},
                          {"mc_accuracy", e.mc.accuracy},
                          {"mc_accuracy_norm", e.mc.accuracy_norm},
                          {"mc_items", e.mc.items}};
  }
  return j;
}

std::string eval_line(const std::string& what, const FullEval& f, const std::vector<Domain>& domains) {
  std::string s = str(what, "  val loss ", fmt("%.4f", f.loss), "  perplexity ", fmt("%.3f", f.perplexity), "  mc acc ",
                      fmt("%.4f", f.mc_accuracy), " (norm ", fmt("%.4f", f.mc_accuracy_norm), ")  per domain:");
  for (size_t d = 0; d < domains.size(); ++d)
    s += str(" ", domains[d].name, " ", fmt("%.3f", f.domains[d].perplexity), "/", fmt("%.3f", f.domains[d].mc.accuracy));
  if (!f.routing.is_null())
    s += str("  all-experts ", fmt("%.3f", f.routing["all_experts_fraction"].get<double>()), " routing MI ",
             fmt("%.3f", f.routing["routing_mi"].get<double>()));
  return s;
}

/// Attaches the adapters of cfg.finetune to `model`; returns the names adapted.
std::vector<std::string> attach_adapters(models::lm::TransformerLMImpl& model, const config::FinetuneConfig& f) {
  const adapters::LoraOptions lora = adapters::LoraOptions().rank(f.rank).alpha(f.alpha).dropout(f.dropout);
  if (f.adapter == "lora") return adapters::attach_lora(model, f.targets, lora);
  adapters::LoraMixtureOptions o = adapters::LoraMixtureOptions::preset(f.adapter);
  o.lora = lora;
  o.experts = f.experts;
  return adapters::attach_lora_mixture(model, f.targets, o);
}

}  // namespace

TrainResult run_finetune_training(const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts) {
  std::ostream& out = opts.out ? *opts.out : std::cout;
  const bool resuming = !opts.resume.empty();
  const config::TrainConfig& tc = cfg.train;
  const config::FinetuneConfig& fc = cfg.finetune;
  const int64_t T = cfg.lm.context, B = tc.batch_size;

  // Everything that can fail on bad input happens before anything is written.
  const int threads = set_threads(tc.threads);
  LMCheckpoint base = load_lm_checkpoint(io::resolve_checkpoint(fc.base));
  DYNAMOE_CHECK(T <= base.cfg.lm.context, "config: lm.context = ", T, " is out of range (the base model ", fc.base,
                " was trained with a context of ", base.cfg.lm.context, ")");
  models::lm::TransformerLM model = base.model;
  int64_t base_parameters = 0;
  for (auto& p : model->parameters()) {
    base_parameters += p.numel();
    p.set_requires_grad(false);
  }
  std::vector<Domain> domains;
  const auto names = finetune_domains(cfg);
  DYNAMOE_CHECK(B >= static_cast<int64_t>(names.size()), "config: train.batch_size = ", B,
                " is out of range (at least one sequence per domain: ", names.size(), ")");
  for (size_t d = 0; d < names.size(); ++d) {
    config::DataConfig dc = cfg.data;
    dc.dataset = names[d];
    dc.tokenizer = base.cfg.data.tokenizer;
    domains.push_back({names[d], data::open_token_corpus(lm_corpus_dir(dc)), {}});
    Domain& dom = domains.back();
    DYNAMOE_CHECK(dom.corpus.vocab_size == model->vocab_size(), dom.corpus.dir, ": vocabulary of ", dom.corpus.vocab_size,
                  " tokens, the base model has ", model->vocab_size());
    if (fc.mc_items > 0)
      dom.mc = eval::continuation_task(dom.corpus.val, *base.tokenizer,
                                       {fc.mc_items, fc.mc_choices, fc.mc_context, fc.mc_continuation,
                                        1234 + static_cast<uint64_t>(d), names[d]});
  }
  const std::string ckpt_dir = (fs::path(run_dir) / "checkpoints").string();
  const std::string config_yaml = config::Config(cfg).to_yaml();

  // The base model's numbers, before any adapter.
  const auto t_base = Clock::now();
  const FullEval base_eval = evaluate_all(*model, domains, *base.tokenizer, T, B, cfg.lm.eval_tokens);
  const double base_seconds = std::chrono::duration<double>(Clock::now() - t_base).count();

  torch::manual_seed(static_cast<uint64_t>(tc.seed));
  const std::vector<std::string> targets = attach_adapters(*model, fc);
  std::vector<at::Tensor> trainable;
  int64_t trainable_count = 0;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) {
      trainable.push_back(p);
      trainable_count += p.numel();
    }
  model->train();
  auto opt = make_optimizer(tc, trainable);
  const int64_t per_epoch = std::max<int64_t>(1, domains[0].corpus.train.size() / (B * T));
  const int64_t total = tc.steps > 0 ? tc.steps : tc.epochs * per_epoch;
  const int64_t eval_every = tc.eval_every > 0 ? tc.eval_every : std::max<int64_t>(1, total / 10);
  const int64_t ckpt_every = tc.checkpoint_every > 0 ? tc.checkpoint_every : eval_every;

  io::TrainerState state;
  if (resuming) {
    state = resume_from_checkpoint(run_dir, *model, *opt, out);
  } else {
    create_run_folder(run_dir, config_yaml, opts.overwrite);
  }
  MetricsLog metrics(run_dir, resuming ? state.step : -1);
  if (!resuming)
    metrics.write({{"step", 0}, {"split", "base"}, {"loss", base_eval.loss}, {"perplexity", base_eval.perplexity},
                   {"mc_accuracy", base_eval.mc_accuracy}, {"mc_accuracy_norm", base_eval.mc_accuracy_norm},
                   {"domains", domains_json(base_eval, domains)}});
  out << "run " << run_dir << ": " << fc.adapter << " adapters on " << targets.size() << " projections ("
      << fc.targets << ") of the frozen base " << base.dir << " (" << base_parameters << " parameters); "
      << trainable_count << " trainable parameters\n  domains:";
  for (const auto& d : domains)
    out << " " << d.name << " (" << d.corpus.train.size() << " train / " << d.corpus.val.size() << " val tokens, "
        << d.mc.size() << " multiple-choice items)";
  out << "\n  " << total << " steps of " << B << " x " << T << " tokens, " << threads << " threads\n"
      << eval_line("base model", base_eval, domains) << fmt("  (%.1f s)", base_seconds) << "\n";

  Progress progress(out, opts.live, state.step, total, tc.log_every, "tokens");
  const auto t_start = Clock::now();
  auto t_window = t_start;
  double loss_window = 0, aux_window = 0, last_rate = 0;
  int64_t window_steps = 0, window_tokens = 0;
  FullEval last_eval;
  std::string last_ckpt;
  TrainResult result;
  result.run_dir = run_dir;
  const int64_t D = static_cast<int64_t>(domains.size());

  auto do_eval = [&](int64_t step) {
    last_eval = evaluate_all(*model, domains, *base.tokenizer, T, B, cfg.lm.eval_tokens);
    json row = {{"step", step}, {"split", "val"}, {"loss", last_eval.loss}, {"perplexity", last_eval.perplexity},
                {"mc_accuracy", last_eval.mc_accuracy}, {"mc_accuracy_norm", last_eval.mc_accuracy_norm},
                {"domains", domains_json(last_eval, domains)},
                {"elapsed_s", std::chrono::duration<double>(Clock::now() - t_start).count()}};
    if (!last_eval.routing.is_null()) row["routing"] = last_eval.routing;
    metrics.write(row);
    progress.message(eval_line(str("eval  step ", step), last_eval, domains));
  };
  auto do_checkpoint = [&](int64_t step) {
    last_ckpt = save_run_checkpoint(run_dir, *model, *opt, state, step, per_epoch, config_yaml, tc.keep_checkpoints);
  };

  bool evaluated_last = false;
  while (state.step < total) {
    const int64_t step = state.step;
    // Equal shares of the batch per domain (the first B mod D domains get one more).
    std::vector<at::Tensor> xs, ys;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t Bd = B / D + (d < B % D ? 1 : 0);
      auto [x, y] = lm_train_batch(domains[static_cast<size_t>(d)].corpus.train, Bd, T,
                                   static_cast<uint64_t>(tc.seed) * 1000 + static_cast<uint64_t>(d), step);
      xs.push_back(x);
      ys.push_back(y);
    }
    const at::Tensor x = torch::cat(xs), y = torch::cat(ys);
    const double lr = lr_at(tc, step, total);
    set_lr(*opt, lr);
    const models::lm::LMOutput mo = model->forward(x);
    const at::Tensor loss = at::cross_entropy_loss(mo.logits.reshape({B * T, -1}), y.reshape({-1}));
    const at::Tensor aux = adapters::mixture_aux_loss(*model);
    opt->zero_grad();
    (aux.defined() ? loss + aux : loss).backward();
    if (tc.grad_clip > 0) torch::nn::utils::clip_grad_norm_(trainable, tc.grad_clip);
    opt->step();
    state.step = step + 1;
    const double loss_v = loss.item<double>();
    DYNAMOE_CHECK(std::isfinite(loss_v), "fine-tuning diverged: loss is ", loss_v, " at step ", state.step,
                  " (lower train.lr or set train.grad_clip)");
    loss_window += loss_v;
    if (aux.defined()) aux_window += aux.item<double>();
    ++window_steps;
    window_tokens += B * T;
    const double dt = std::chrono::duration<double>(Clock::now() - t_window).count();
    const double rate = dt > 0 ? window_tokens / dt : 0;
    progress.update(state.step, loss_window / window_steps, lr, rate > 0 ? rate : last_rate);
    if (state.step % tc.log_every == 0 || state.step == total) {
      json row = {{"step", state.step},
                  {"split", "train"},
                  {"loss", loss_window / window_steps},
                  {"lr", lr},
                  {"tokens_per_s", rate},
                  {"elapsed_s", std::chrono::duration<double>(Clock::now() - t_start).count()}};
      if (aux.defined()) row["aux_loss"] = aux_window / window_steps;
      metrics.write(row);
      last_rate = rate;
      loss_window = aux_window = 0;
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

  // The adapters alone, and the items scored.
  const std::string adapter_file = (fs::path(run_dir) / "adapter.safetensors").string();
  adapters::save_adapters(*model, adapter_file);
  std::vector<eval::MultipleChoiceItem> all_items;
  for (const auto& d : domains) all_items.insert(all_items.end(), d.mc.begin(), d.mc.end());
  if (!all_items.empty()) eval::write_multiple_choice((fs::path(run_dir) / "mc.jsonl").string(), all_items);

  const double seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  result.steps = state.step;
  result.checkpoint = last_ckpt;
  result.seconds = seconds;
  result.test_loss = last_eval.loss;
  result.perplexity = last_eval.perplexity;
  json summary = {{"run_dir", run_dir},
                  {"checkpoint", last_ckpt},
                  {"adapter_file", adapter_file},
                  {"adapter", fc.adapter},
                  {"targets", targets},
                  {"steps", result.steps},
                  {"parameters", trainable_count},
                  {"base_parameters", base_parameters},
                  {"val_loss", last_eval.loss},
                  {"val_perplexity", last_eval.perplexity},
                  {"mc_accuracy", last_eval.mc_accuracy},
                  {"mc_accuracy_norm", last_eval.mc_accuracy_norm},
                  {"base_val_perplexity", base_eval.perplexity},
                  {"base_mc_accuracy", base_eval.mc_accuracy},
                  {"base_mc_accuracy_norm", base_eval.mc_accuracy_norm},
                  {"domains", domains_json(last_eval, domains)},
                  {"base_domains", domains_json(base_eval, domains)},
                  {"train_seconds_this_process", seconds},
                  {"train_tokens_per_s", last_rate},
                  {"threads", threads}};
  if (!last_eval.routing.is_null()) {
    summary["routing"] = last_eval.routing;
    summary["all_experts_fraction"] = last_eval.routing["all_experts_fraction"];
    summary["routing_mi"] = last_eval.routing["routing_mi"];
  }
  write_file_atomic((fs::path(run_dir) / "summary.json").string(), summary.dump(2) + "\n");
  out << "done: " << result.steps << " steps; val perplexity " << fmt("%.3f", last_eval.perplexity) << " (base "
      << fmt("%.3f", base_eval.perplexity) << "), multiple-choice accuracy " << fmt("%.4f", last_eval.mc_accuracy)
      << " (base " << fmt("%.4f", base_eval.mc_accuracy) << "); adapters in " << adapter_file << "\n";
  return result;
}

FinetunedModel load_finetuned(const std::string& run_dir) {
  FinetunedModel f;
  f.run_dir = run_dir;
  const std::string cfg_path = (fs::path(run_dir) / "config.yaml").string();
  f.cfg = config::parse_config(read_file(cfg_path), cfg_path);
  DYNAMOE_CHECK(f.cfg.model.kind == "finetune", run_dir, ": holds a '", f.cfg.model.kind,
                "' run, not a fine-tuning run (model.kind = finetune)");
  const std::string adapter_file = (fs::path(run_dir) / "adapter.safetensors").string();
  DYNAMOE_CHECK(fs::exists(adapter_file), run_dir, ": no adapter.safetensors (the run has not finished)");
  LMCheckpoint base = load_lm_checkpoint(io::resolve_checkpoint(f.cfg.finetune.base));
  f.tokenizer = std::move(base.tokenizer);
  f.model = base.model;
  for (auto& p : f.model->parameters()) p.set_requires_grad(false);
  adapters::load_adapters(*f.model, adapter_file);
  f.model->eval();
  f.context = f.cfg.lm.context;
  return f;
}

}  // namespace dynamoe::train
