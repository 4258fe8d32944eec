#pragma once
// Fine-tuning a frozen pretrained dynamoe language model with adapters (model.kind = finetune):
// LoRA, or a mixture of LoRA experts (MoLA, MixLoRA, DynMoLE; adapters/lora_mixture.h) on the
// projections finetune.targets names. Training batches mix the domains of finetune.domains in
// equal shares; every evaluation measures per domain the val perplexity, the "which
// continuation is the real one" multiple-choice accuracy (eval/continuation_task.h), and for
// mixtures the routing: the share of assignments each expert received per domain and the
// fraction of tokens sent to every expert. The base model's numbers are measured first, so
// each run also reports what fine-tuning gained. Base weights are never written.
//
// Run folder: config.yaml, metrics.jsonl, checkpoints/ (base + adapters + optimizer, for exact
// resumption), adapter.safetensors (the adapters alone, adapters/adapter_file.h), mc.jsonl
// (the items scored), summary.json. Reached through run_training (trainer.h).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/eval/multiple_choice.h"
#include "dynamoe/models/lm/transformer.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::train {

/// Trains the adapters of `cfg` in `run_dir` (already resolved by run_training).
TrainResult run_finetune_training(const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts);

/// The domains of a finetune config (finetune.domains split at commas, else data.dataset).
std::vector<std::string> finetune_domains(const config::Config& cfg);

/// A fine-tuned model restored from a finetune run: the base (frozen) with the run's adapters.
struct FinetunedModel {
  std::string run_dir;
  config::Config cfg;                           ///< the run's config.yaml
  std::unique_ptr<text::Tokenizer> tokenizer;   ///< the base's
  models::lm::TransformerLM model{nullptr};     ///< eval mode
  int64_t context = 0;
};
/// Loads `run_dir`'s base and adapter.safetensors (the run must have finished).
FinetunedModel load_finetuned(const std::string& run_dir);

}  // namespace dynamoe::train
