#pragma once
// The language-model training loop (model.kind = lm): random token windows from the
// memory-mapped train split -> TransformerLM -> next-token cross-entropy (+ MoE auxiliary
// losses) -> optimizer; val perplexity next to a bigram baseline fitted on the same train
// split; per-layer MoE metrics; atomic checkpoints and exact resumption (a batch depends only
// on the seed and the step). Reached through run_training (trainer.h).
#include <string>

#include <memory>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/models/lm/transformer.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/train/trainer.h"

namespace dynamoe::train {

/// Trains the language model of `cfg` in `run_dir` (already resolved by run_training).
TrainResult run_lm_training(const std::string& run_dir, const config::Config& cfg, const TrainOptions& opts);

/// The folder of the token files cfg.data names (<data.dir>/<dataset>/<tokenizer>); a missing
/// corpus is an error naming the fetch command.
std::string lm_corpus_dir(const config::DataConfig& cfg);

/// The tokenizer cfg.data names (gpt2 reads <data.dir>/gpt2; missing files name the fetch command).
std::unique_ptr<text::Tokenizer> lm_tokenizer(const config::DataConfig& cfg);

/// A language model restored from a checkpoint folder (see io::resolve_checkpoint).
struct LMCheckpoint {
  std::string dir;
  config::Config cfg;                           ///< its config.yaml with the overrides applied
  std::unique_ptr<text::Tokenizer> tokenizer;
  models::lm::TransformerLM model{nullptr};     ///< weights loaded, eval mode
  int64_t step = 0;
};
/// Loads `checkpoint_dir`; throws when it does not hold a language model.
LMCheckpoint load_lm_checkpoint(const std::string& checkpoint_dir, const std::vector<std::string>& overrides = {});

}  // namespace dynamoe::train
