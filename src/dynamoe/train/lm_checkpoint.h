#pragma once
// Where a language model's data, tokenizer and checkpoints are found: the corpus folder and
// tokenizer a config names (missing files name the fetch command), and an LM restored from a
// checkpoint folder for eval, generate, mc and fine-tuning.
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/models/lm/transformer.h"
#include "dynamoe/text/tokenizer.h"

namespace dynamoe::train {

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
