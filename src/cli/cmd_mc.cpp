// dynamoe mc: multiple-choice accuracy of a language model (or a fine-tuned run) on a JSONL file
// in lm-evaluation-harness' {"context", "choices", "label"} format.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/eval/multiple_choice.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/train/finetune_task.h"
#include "dynamoe/train/lm_checkpoint.h"
#include "dynamoe/train/trainer.h"
#include "dynamoe/util/atomic_file.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

bool is_finetune_run(const std::string& path) {
  const fs::path cfg = fs::path(path) / "config.yaml";
  if (!fs::exists(cfg) || !fs::exists(fs::path(path) / "adapter.safetensors")) return false;
  return config::parse_config(read_file(cfg.string()), cfg.string()).model.kind == "finetune";
}

int run(const ParsedArgs& a) {
  if (!a.has("model")) throw UsageError("dynamoe mc: --model PATH is required; see dynamoe mc --help");
  if (!a.has("tasks")) throw UsageError("dynamoe mc: --tasks FILE.jsonl is required; see dynamoe mc --help");
  const std::string path = a.get("model");
  const auto items = eval::read_multiple_choice(a.get("tasks"));
  std::unique_ptr<text::Tokenizer> tok;
  models::lm::TransformerLM model{nullptr};
  int64_t context = 0, threads_cfg = 0;
  std::string what;
  if (is_finetune_run(path)) {
    train::FinetunedModel f = train::load_finetuned(path);
    tok = std::move(f.tokenizer);
    model = f.model;
    context = f.context;
    threads_cfg = f.cfg.train.threads;
    what = str("fine-tuned run ", path, " (", f.cfg.finetune.adapter, " adapters on ", f.cfg.finetune.base, ")");
  } else {
    train::LMCheckpoint c = train::load_lm_checkpoint(io::resolve_checkpoint(path));
    tok = std::move(c.tokenizer);
    model = c.model;
    context = c.cfg.lm.context;
    threads_cfg = c.cfg.train.threads;
    what = str("language model ", c.dir, " (step ", c.step, ")");
  }
  const int threads = train::set_threads(a.get_int("threads", threads_cfg, 0));
  model->eval();
  const auto r = eval::score_multiple_choice(items, *tok, [&](const at::Tensor& ids) { return model->forward(ids).logits; },
                                             context);
  std::printf("%s, %d threads\n", what.c_str(), threads);
  std::printf("%s: accuracy %.4f, length-normalised accuracy %.4f on %zu items\n", a.get("tasks").c_str(), r.accuracy,
              r.accuracy_norm, items.size());
  for (const auto& [domain, acc] : r.by_domain)
    std::printf("  %-14s accuracy %.4f, length-normalised %.4f (%lld items)\n", domain.c_str(), acc.accuracy,
                acc.accuracy_norm, static_cast<long long>(acc.items));
  return 0;
}

}  // namespace

Command mc_command() {
  return {{"mc",
           "multiple-choice accuracy of a language model on a JSONL file (ARC, HellaSwag, PIQA style)",
           "dynamoe mc --model PATH --tasks FILE.jsonl [--threads N]",
           "Scores every choice by the log-likelihood the model gives it after the context, as\n"
           "lm-evaluation-harness does, and reports accuracy and length-normalised accuracy (per byte),\n"
           "also per \"domain\" when the items have one. FILE.jsonl holds one item per line:\n"
           "  {\"context\": \"The cat sat on the\", \"choices\": [\" mat.\", \" moon.\"], \"label\": 0}\n"
           "PATH is a language model (checkpoint or run folder) or a fine-tuning run (model.kind =\n"
           "finetune: its base with the run's adapter.safetensors). docs/finetune.md.",
           {{"model", "PATH", "language-model checkpoint or run folder, or a fine-tuning run folder"},
            {"tasks", "FILE", "the JSONL items"},
            {"threads", "N", "intra-op threads (default: the run's train.threads; 0: all cores)"}},
           0},
          run};
}

}  // namespace dynamoe::cli
