// dynamoe eval: evaluate a saved checkpoint on the test (or train) split.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/dist/launch_env.h"
#include "dynamoe/dist/process_group.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/models/lm/bigram.h"
#include "dynamoe/report/stats.h"
#include "dynamoe/train/evaluate.h"
#include "dynamoe/train/lm_data.h"
#include "dynamoe/train/lm_checkpoint.h"
#include "dynamoe/train/moe_report.h"
#include "dynamoe/train/trainer.h"
#include "dynamoe/util/atomic_file.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

/// The processes of a distributed evaluation other than rank 0 print nothing.
bool quiet() { return dist::world_group() && dist::world_group()->rank() != 0; }

/// --per-example FILE: the record to fill (one process only), or null.
std::unique_ptr<train::PerExample> per_example_record(const ParsedArgs& a) {
  if (!a.has("per-example")) return nullptr;
  if (dist::world_group() && dist::world_group()->size() > 1)
    throw UsageError("dynamoe eval: --per-example is written by one process; run it without dynamoe launch");
  return std::make_unique<train::PerExample>();
}

/// Writes the record and prints, per MoE layer and for the mean over layers, Spearman's rank
/// correlation of the active experts with the loss.
void finish_per_example(const ParsedArgs& a, const train::PerExample& rec, const char* what) {
  rec.write_csv(a.get("per-example"));
  std::printf("per-%s record: %s (%lld rows)\n", what, a.get("per-example").c_str(), static_cast<long long>(rec.items()));
  if (rec.active.empty()) return;
  std::printf("active experts vs %s loss, Spearman rho [95%% CI]:", what);
  auto show = [](const char* name, const report::RankCorrelation& r) {
    if (std::isnan(r.rho)) std::printf("  %s: count constant", name);
    else std::printf("  %s: %.3f [%.3f, %.3f]", name, r.rho, r.lo, r.hi);
  };
  for (size_t k = 0; k < rec.active.size(); ++k) {
    const std::vector<double> count(rec.active[k].begin(), rec.active[k].end());
    show(("layer " + std::to_string(k)).c_str(), report::spearman(count, rec.loss));
  }
  if (rec.active.size() > 1) show("mean", report::spearman(rec.active_mean(), rec.loss));
  std::printf("\n");
}

/// A language model: perplexity on the val (or train) split next to the bigram baseline.
int run_lm(const ParsedArgs& a, const std::string& ckpt) {
  const std::string split = a.get("split", "val");
  if (split != "val" && split != "train") throw UsageError(str("dynamoe eval: --split must be val or train for a language model, got '", split, "'"));
  train::LMCheckpoint c = train::load_lm_checkpoint(ckpt, a.all("set"));
  const int threads = train::set_threads(c.cfg.train.threads);
  data::TokenCorpus corpus = data::open_token_corpus(train::lm_corpus_dir(c.cfg.data), c.cfg.data.tokenizer);
  const data::TokenFile& tokens = split == "val" ? corpus.val : corpus.train;
  models::lm::BigramLM bigram(corpus.train.data(), corpus.train.size(), corpus.vocab_size);
  double bytes_per_token = 0;
  try {
    const auto& m = corpus.meta.at("splits").at(split);
    bytes_per_token = m.at("text_bytes").get<double>() / m.at("tokens").get<double>();
  } catch (const std::exception&) {
  }
  const int64_t max_tokens = a.get_int("tokens", c.cfg.lm.eval_tokens, 0);
  const auto record = per_example_record(a);
  train::LMEvalResult r = train::evaluate_lm(*c.model, tokens, c.cfg.lm.context, c.cfg.train.batch_size, max_tokens,
                                             bytes_per_token, &bigram, record.get());
  if (quiet()) return 0;  // rank 0 reports for every process of a distributed evaluation
  std::printf("checkpoint %s (step %lld, lm, %lld parameters, %d threads)\n", ckpt.c_str(),
              static_cast<long long>(c.step), static_cast<long long>(c.model->num_parameters()), threads);
  std::printf("%s perplexity: %.3f (loss %.4f nats/token, %.3f bits/byte) on %lld tokens; bigram baseline %.3f\n",
              split.c_str(), r.perplexity, r.loss, r.bits_per_byte, static_cast<long long>(r.tokens),
              r.bigram_perplexity);
  if (!r.moe.empty()) std::printf("MoE blocks:\n%s", train::moe_table(r.moe).c_str());
  if (record) finish_per_example(a, *record, "token");
  return 0;
}

int run(const ParsedArgs& a) {
  if (!a.has("checkpoint")) throw UsageError("dynamoe eval: --checkpoint PATH is required; see dynamoe eval --help");
  const std::string ckpt = io::resolve_checkpoint(a.get("checkpoint"));
  const std::string cfg_path = (fs::path(ckpt) / "config.yaml").string();
  const config::Config cfg = config::parse_config(read_file(cfg_path), cfg_path, a.all("set"));
  // Launched as several processes (dynamoe launch --nproc N -- eval ...): each evaluates its part
  // of every batch, with its share of the experts under moe.expert_parallel. In one process
  // every expert is here, whatever moe.expert_parallel the run was trained with.
  if (dist::launch_env_from_environment().distributed()) train::join_launched_processes(cfg, "eval");
  if (cfg.model.kind == "lm") return run_lm(a, ckpt);
  const std::string split = a.get("split", "test");
  if (split != "test" && split != "train") throw UsageError(str("dynamoe eval: --split must be test or train, got '", split, "'"));
  const int threads = train::set_threads(cfg.train.threads);
  data::DataSplits data = data::load_data(cfg.data);
  models::Classifier model = models::build_model(cfg, data.spec);
  io::load_state_dict(*model, (fs::path(ckpt) / "model.safetensors").string(), train::other_ranks_experts());
  const io::TrainerState st = io::load_trainer_state(ckpt);
  const data::TensorDataset& ds = split == "test" ? data.test : data.train;
  const auto record = per_example_record(a);
  train::EvalResult r = train::evaluate(*model, ds, 1000, record.get());
  if (quiet()) return 0;
  std::printf("checkpoint %s (step %lld, %s, %lld parameters, %d threads)\n", ckpt.c_str(),
              static_cast<long long>(st.step), cfg.model.kind.c_str(), static_cast<long long>(model->num_parameters()),
              threads);
  std::printf("%s accuracy: %.2f%% (%lld examples), loss %.4f\n", split.c_str(), 100.0 * r.accuracy,
              static_cast<long long>(r.examples), r.loss);
  if (!r.moe.empty()) std::printf("MoE layers:\n%s", train::moe_table(r.moe).c_str());
  if (record) finish_per_example(a, *record, "example");
  return 0;
}

}  // namespace

Command eval_command() {
  return {{"eval",
           "evaluate a checkpoint (accuracy and loss)",
           "dynamoe eval --checkpoint PATH [--split test|train|val] [--tokens N] [--per-example FILE]\n"
           "             [--set KEY=VALUE]...",
           "PATH is a checkpoint folder (runs/<name>/checkpoints/step_<N>), a run folder (its newest\n"
           "checkpoint) or a model.safetensors file inside a checkpoint folder. Classifiers report\n"
           "accuracy; language models report perplexity (and bits per byte) with the bigram baseline\n"
           "fitted on the same train split, on val (default) or train.",
           {{"checkpoint", "PATH", "checkpoint folder, run folder or model.safetensors"},
            {"split", "SPLIT", "classifiers: test (default) or train; language models: val (default) or train"},
            {"tokens", "N", "language models: score the first N tokens (default lm.eval_tokens; 0: all)"},
            {"per-example", "FILE", "write each example's (LM: token's) loss and active experts per MoE layer as CSV, and "
                                    "print their rank correlation"},
            {"set", "KEY=VALUE", "override a key of the saved config (e.g. data.dir)", true}},
           0},
          run};
}

}  // namespace dynamoe::cli
