#pragma once
// Batches of token windows for language-model training and evaluation, read straight from
// memory-mapped token files (data/token_file.h).
// Shape legend: B sequences, T = lm.context positions.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "dynamoe/data/token_file.h"
#include "dynamoe/models/lm/bigram.h"
#include "dynamoe/models/lm/transformer.h"
#include "dynamoe/moe/layer_stats.h"
#include "dynamoe/train/per_example.h"

namespace dynamoe::train {

/// Training batch `step`: B windows of T + 1 consecutive tokens at offsets drawn uniformly by a
/// generator seeded with (seed, step), so a resumed run reads exactly the batches it would have.
/// Returns inputs and targets (the inputs shifted by one), both [B, T] int64.
std::pair<at::Tensor, at::Tensor> lm_train_batch(const data::TokenFile& tokens, int64_t B, int64_t T, uint64_t seed,
                                                 int64_t step);

/// What an evaluation measured over the scored targets.
struct LMEvalResult {
  int64_t tokens = 0;            ///< targets scored
  double loss = 0;               ///< mean negative log-likelihood, nats per token
  double perplexity = 0;         ///< exp(loss)
  double bits_per_byte = 0;      ///< loss in bits per byte of text (bytes per token from the split's meta; 0: unknown)
  double bigram_loss = 0;        ///< the bigram baseline on the same targets (0: not asked)
  double bigram_perplexity = 0;
  std::vector<moe::LayerStatsAccumulator> moe;  ///< per MoE block
};

/// Scores the split as consecutive windows: window w holds tokens [w T, w T + T] and each of
/// its T targets is predicted from the window's tokens before it. Uses the first
/// `max_tokens` targets (rounded down to whole windows; 0: all). Eval mode, no gradients;
/// the model's mode is restored. `bytes_per_token` converts to bits per byte (0: skip).
/// With `record`, also each target's loss and active experts per MoE block (one process only).
LMEvalResult evaluate_lm(models::lm::TransformerLMImpl& model, const data::TokenFile& tokens, int64_t T, int64_t B,
                         int64_t max_tokens, double bytes_per_token, const models::lm::BigramLM* bigram = nullptr,
                         PerExample* record = nullptr);

}  // namespace dynamoe::train
