#pragma once
// The fine-tuning task (model.kind = finetune): a frozen pretrained dynamoe language model with
// adapters, LoRA or a mixture of LoRA experts (MoLA, MixLoRA, DynMoLE; adapters/lora_mixture.h),
// on the projections finetune.targets names. Training batches mix the domains of
// finetune.domains in equal shares; every evaluation measures per domain the val perplexity, the
// "which continuation is the real one" multiple-choice accuracy (eval/continuation_task.h), and
// for mixtures the routing: the share of assignments each expert received per domain and the
// fraction of tokens sent to every expert. The base model's numbers are measured first, so each
// run also reports what fine-tuning gained. Base weights (and the base's balancing biases) are
// never changed.
//
// Run folder: config.yaml, metrics.jsonl, checkpoints/ (base + adapters + optimizer, for exact
// resumption), adapter.safetensors (the adapters alone, adapters/adapter_file.h), mc.jsonl (the
// items scored), summary.json.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dynamoe/config/config.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/eval/multiple_choice.h"
#include "dynamoe/models/lm/transformer.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/train/task.h"

namespace dynamoe::train {

/// The domains of a finetune config (finetune.domains split at commas, else data.dataset).
std::vector<std::string> finetune_domains(const config::Config& cfg);

/// One fine-tuning domain: its corpus and multiple-choice items.
struct Domain {
  std::string name;
  data::TokenCorpus corpus;
  std::vector<eval::MultipleChoiceItem> mc;
};

/// Every domain evaluated: per-domain figures, their aggregate and the mixtures' routing.
struct FullEval;

class FinetuneTask : public TokenTask {
 public:
  /// Loads the base and the domains, measures the base, attaches the adapters (seeded by
  /// train.seed); nothing is written.
  explicit FinetuneTask(const config::Config& cfg);
  ~FinetuneTask() override;
  torch::nn::Module& model() override { return *model_; }
  int64_t batches_per_epoch() const override;
  void start(const RunInfo& run, MetricsLog& metrics, std::ostream& out) override;
  StepOutput forward(int64_t step) override;
  int64_t batch_rows(int64_t) const override { return cfg_.train.batch_size; }
  int64_t smallest_batch() const override { return cfg_.train.batch_size; }
  EvalOutput evaluate() override;
  void finish(const RunInfo& run, nlohmann::json& summary, TrainResult& result, std::ostream& out) override;

 private:
  const config::Config cfg_;
  std::string base_dir_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  models::lm::TransformerLM model_{nullptr};
  int64_t base_parameters_ = 0;
  std::vector<Domain> domains_;
  std::vector<std::string> targets_;
  std::unique_ptr<FullEval> base_eval_, last_eval_;
  double base_seconds_ = 0;
};

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
