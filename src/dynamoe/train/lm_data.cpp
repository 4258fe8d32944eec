#include "dynamoe/train/lm_data.h"

#include <torch/torch.h>

#include <cmath>
#include <random>

#include "dynamoe/train/eval_shards.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {

std::pair<at::Tensor, at::Tensor> lm_train_batch(const data::TokenFile& tokens, int64_t B, int64_t T, uint64_t seed,
                                                 int64_t step) {
  const int64_t n = tokens.size();
  DYNAMOE_CHECK(n > T + 1, tokens.path(), ": ", n, " tokens are too few for windows of ", T + 1,
                " (lower lm.context)");
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(step),
                    static_cast<uint32_t>(static_cast<uint64_t>(step) >> 32), 0x4c4du};
  std::mt19937_64 rng(seq);
  std::uniform_int_distribution<int64_t> pick(0, n - T - 1);
  at::Tensor x = at::empty({B, T}, at::kLong), y = at::empty({B, T}, at::kLong);
  int64_t* px = x.data_ptr<int64_t>();
  int64_t* py = y.data_ptr<int64_t>();
  const uint16_t* src = tokens.data();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t off = pick(rng);
    for (int64_t t = 0; t < T; ++t) {
      px[b * T + t] = src[off + t];
      py[b * T + t] = src[off + t + 1];
    }
  }
  return {x, y};
}

LMEvalResult evaluate_lm(models::lm::TransformerLMImpl& model, const data::TokenFile& tokens, int64_t T, int64_t B,
                         int64_t max_tokens, double bytes_per_token, const models::lm::BigramLM* bigram,
                         PerExample* record) {
  const int64_t n = tokens.size();
  int64_t windows = (n - 1) / T;
  if (max_tokens > 0) windows = std::min(windows, std::max<int64_t>(1, max_tokens / T));
  DYNAMOE_CHECK(windows > 0, tokens.path(), ": ", n, " tokens are too few for one window of ", T + 1,
                " (lower lm.context)");
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  LMEvalResult r;
  // Split over the processes of a distributed run: each its windows of every batch.
  const EvalShards shards;
  DYNAMOE_CHECK(!record || shards.ranks() == 1, "evaluation: a per-token record is written by one process, not ",
                shards.ranks());
  std::vector<double> sums = {0, 0};  // summed negative log-likelihood: the model's, the bigram's
  const uint16_t* src = tokens.data();
  for (const auto& [w0, w1] : shards.batches(windows, B)) {
    const auto [lo, hi] = shards.rows(w0, w1);
    const int64_t nb = hi - lo;
    at::Tensor x = at::empty({nb, T}, at::kLong), y = at::empty({nb, T}, at::kLong);
    int64_t* px = x.data_ptr<int64_t>();
    int64_t* py = y.data_ptr<int64_t>();
    for (int64_t b = 0; b < nb; ++b) {
      const uint16_t* win = src + (lo + b) * T;
      for (int64_t t = 0; t < T; ++t) {
        px[b * T + t] = win[t];
        py[b * T + t] = win[t + 1];
        if (bigram) sums[1] += bigram->nll(win[t], win[t + 1]);
      }
    }
    models::lm::LMOutput out;
    {
      const auto scope = shards.scope(w0, w1);
      out = model.forward(x);
    }
    const at::Tensor nll =
        at::cross_entropy_loss(out.logits.reshape({nb * T, -1}), y.reshape({-1}), {}, at::Reduction::None);  // [nb T]
    sums[0] += nll.sum().item<double>();
    if (record) record->add(nll, {}, {}, out.moe_stats);
    if (r.moe.size() < out.moe_stats.size()) r.moe.resize(out.moe_stats.size());
    for (size_t l = 0; l < out.moe_stats.size(); ++l) r.moe[l].add(out.moe_stats[l]);
  }
  shards.sum(sums);
  shards.sum(r.moe);
  model.train(was_training);
  r.tokens = windows * T;
  r.loss = sums[0] / r.tokens;
  r.perplexity = std::exp(r.loss);
  if (bytes_per_token > 0) r.bits_per_byte = r.loss / std::log(2.0) / bytes_per_token;
  if (bigram) {
    r.bigram_loss = sums[1] / r.tokens;
    r.bigram_perplexity = std::exp(r.bigram_loss);
  }
  return r;
}

}  // namespace dynamoe::train
