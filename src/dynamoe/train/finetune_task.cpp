#include "dynamoe/train/finetune_task.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "dynamoe/adapters/adapter_file.h"
#include "dynamoe/adapters/lora.h"
#include "dynamoe/adapters/lora_mixture.h"
#include "dynamoe/eval/continuation_task.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/train/lm_checkpoint.h"
#include "dynamoe/train/lm_data.h"
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
}  // namespace

struct FullEval {
  std::vector<DomainEval> domains;
  double loss = 0, perplexity = 0, mc_accuracy = 0, mc_accuracy_norm = 0;
  json routing;  ///< null for LoRA
};

namespace {

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

FinetuneTask::FinetuneTask(const config::Config& cfg) : cfg_(cfg) {
  const config::FinetuneConfig& fc = cfg.finetune;
  const int64_t T = cfg.lm.context, B = cfg.train.batch_size;
  LMCheckpoint base = load_lm_checkpoint(io::resolve_checkpoint(fc.base));
  DYNAMOE_CHECK(T <= base.cfg.lm.context, "config: lm.context = ", T, " is out of range (the base model ", fc.base,
                " was trained with a context of ", base.cfg.lm.context, ")");
  base_dir_ = base.dir;
  tokenizer_ = std::move(base.tokenizer);
  model_ = base.model;
  for (auto& p : model_->parameters()) {
    base_parameters_ += p.numel();
    p.set_requires_grad(false);
  }
  const auto names = finetune_domains(cfg);
  DYNAMOE_CHECK(B >= static_cast<int64_t>(names.size()), "config: train.batch_size = ", B,
                " is out of range (at least one sequence per domain: ", names.size(), ")");
  for (size_t d = 0; d < names.size(); ++d) {
    config::DataConfig dc = cfg.data;
    dc.dataset = names[d];
    dc.tokenizer = base.cfg.data.tokenizer;
    domains_.push_back({names[d], data::open_token_corpus(lm_corpus_dir(dc), dc.tokenizer), {}});
    Domain& dom = domains_.back();
    DYNAMOE_CHECK(dom.corpus.vocab_size == model_->vocab_size(), dom.corpus.dir, ": vocabulary of ",
                  dom.corpus.vocab_size, " tokens, the base model has ", model_->vocab_size());
    if (fc.mc_items > 0)
      dom.mc = eval::continuation_task(dom.corpus.val, *tokenizer_,
                                       {fc.mc_items, fc.mc_choices, fc.mc_context, fc.mc_continuation,
                                        1234 + static_cast<uint64_t>(d), names[d]});
  }
  // The base model's numbers, before any adapter.
  const auto t_base = Clock::now();
  base_eval_ = std::make_unique<FullEval>(evaluate_all(*model_, domains_, *tokenizer_, T, B, cfg.lm.eval_tokens));
  base_seconds_ = std::chrono::duration<double>(Clock::now() - t_base).count();
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  targets_ = attach_adapters(*model_, fc);
  model_->train();
}

FinetuneTask::~FinetuneTask() = default;

int64_t FinetuneTask::batches_per_epoch() const {
  return std::max<int64_t>(1, domains_[0].corpus.train.size() / (cfg_.train.batch_size * cfg_.lm.context));
}

void FinetuneTask::start(const RunInfo& run, MetricsLog& metrics, std::ostream& out) {
  const config::FinetuneConfig& fc = cfg_.finetune;
  const FullEval& b = *base_eval_;
  if (!run.resuming)
    metrics.write({{"step", 0}, {"epoch", 0.0}, {"split", "base"}, {"loss", b.loss}, {"perplexity", b.perplexity},
                   {"mc_accuracy", b.mc_accuracy}, {"mc_accuracy_norm", b.mc_accuracy_norm},
                   {"domains", domains_json(b, domains_)}});
  out << "run " << run.run_dir << ": " << fc.adapter << " adapters on " << targets_.size() << " projections ("
      << fc.targets << ") of the frozen base " << base_dir_ << " (" << base_parameters_ << " parameters); "
      << count_parameters(trainable()) << " trainable parameters\n  domains:";
  for (const auto& d : domains_)
    out << " " << d.name << " (" << d.corpus.train.size() << " train / " << d.corpus.val.size() << " val tokens, "
        << d.mc.size() << " multiple-choice items)";
  out << "\n  " << run.total_steps << " steps of " << cfg_.train.batch_size << " x " << cfg_.lm.context
      << " tokens, " << run.threads << " threads\n"
      << eval_line("base model", b, domains_) << fmt("  (%.1f s)", base_seconds_) << "\n";
}

StepOutput FinetuneTask::forward(int64_t step) {
  const int64_t B = cfg_.train.batch_size, T = cfg_.lm.context, D = static_cast<int64_t>(domains_.size());
  // Equal shares of the batch per domain (the first B mod D domains get one more).
  std::vector<at::Tensor> xs, ys;
  for (int64_t d = 0; d < D; ++d) {
    const int64_t Bd = B / D + (d < B % D ? 1 : 0);
    auto [x, y] = lm_train_batch(domains_[static_cast<size_t>(d)].corpus.train, Bd, T,
                                 static_cast<uint64_t>(cfg_.train.seed) * 1000 + static_cast<uint64_t>(d), step);
    xs.push_back(x);
    ys.push_back(y);
  }
  const at::Tensor x = shard_.rows(torch::cat(xs)), y = shard_.rows(torch::cat(ys));  // [B / shards, T]
  const int64_t rows = x.size(0);
  const models::lm::LMOutput mo = model_->forward(x);
  const at::Tensor loss = at::cross_entropy_loss(mo.logits.reshape({rows * T, -1}), y.reshape({-1}));
  // The frozen base's own MoE figures and losses are not part of fine-tuning.
  return {loss, adapters::mixture_aux_loss(*model_), {}, rows * T};
}

EvalOutput FinetuneTask::evaluate() {
  last_eval_ = std::make_unique<FullEval>(
      evaluate_all(*model_, domains_, *tokenizer_, cfg_.lm.context, cfg_.train.batch_size, cfg_.lm.eval_tokens));
  const FullEval& f = *last_eval_;
  EvalOutput o;
  o.row = {{"split", "val"}, {"loss", f.loss}, {"perplexity", f.perplexity}, {"mc_accuracy", f.mc_accuracy},
           {"mc_accuracy_norm", f.mc_accuracy_norm}, {"domains", domains_json(f, domains_)}};
  if (!f.routing.is_null()) o.row["routing"] = f.routing;
  o.line = eval_line("", f, domains_).substr(2);
  return o;
}

void FinetuneTask::finish(const RunInfo& run, json& summary, TrainResult& result, std::ostream& out) {
  const FullEval& f = *last_eval_;
  const FullEval& b = *base_eval_;
  // The adapters alone, and the items scored.
  const std::string adapter_file = (fs::path(run.run_dir) / "adapter.safetensors").string();
  adapters::save_adapters(*model_, adapter_file);
  std::vector<eval::MultipleChoiceItem> all_items;
  for (const auto& d : domains_) all_items.insert(all_items.end(), d.mc.begin(), d.mc.end());
  if (!all_items.empty()) eval::write_multiple_choice((fs::path(run.run_dir) / "mc.jsonl").string(), all_items);

  result.test_loss = f.loss;
  result.perplexity = f.perplexity;
  summary.update({{"adapter_file", adapter_file},
                  {"adapter", cfg_.finetune.adapter},
                  {"targets", targets_},
                  {"base_parameters", base_parameters_},
                  {"val_loss", f.loss},
                  {"val_perplexity", f.perplexity},
                  {"mc_accuracy", f.mc_accuracy},
                  {"mc_accuracy_norm", f.mc_accuracy_norm},
                  {"base_val_perplexity", b.perplexity},
                  {"base_mc_accuracy", b.mc_accuracy},
                  {"base_mc_accuracy_norm", b.mc_accuracy_norm},
                  {"domains", domains_json(f, domains_)},
                  {"base_domains", domains_json(b, domains_)}});
  if (!f.routing.is_null()) {
    summary["routing"] = f.routing;
    summary["all_experts_fraction"] = f.routing["all_experts_fraction"];
    summary["routing_mi"] = f.routing["routing_mi"];
  }
  out << "done: " << result.steps << " steps; val perplexity " << fmt("%.3f", f.perplexity) << " (base "
      << fmt("%.3f", b.perplexity) << "), multiple-choice accuracy " << fmt("%.4f", f.mc_accuracy) << " (base "
      << fmt("%.4f", b.mc_accuracy) << "); adapters in " << adapter_file << "\n";
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
