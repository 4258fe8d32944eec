#pragma once
// TransformerLM: a decoder-only language model whose feed-forward layers may be MoE layers.
// Shape legend: B sequences, T positions, D = model.d_model, V vocabulary, N = B * T tokens.
//
//   h = embed(ids) (+ learned positions)
//   per block l:  h = h + Attn_l(LN(h));  h = h + FFN_l(LN(h))
//     FFN_l is an MoE layer (any gate/router/expert/schedule of config group `moe`) when
//     lm.moe_every = 1, or for odd l when lm.moe_every = 2 (MoE on every other block,
//     GShard-style), else a dense FFN; the schedule spreads experts over the MoE blocks only.
//   logits = LN(h) W_out^T, W_out = the token embedding when lm.tie_embeddings.
//
//   TransformerLM lm(cfg, /*vocab=*/50257);
//   LMOutput o = lm->forward(ids);                 // ids [B, T] int64 -> logits [B, T, V]
//   KVCache cache = lm->make_cache();               // generation: feed new tokens only
//   o = lm->forward(prompt, &cache); o = lm->forward(next, &cache);
// Parameters: tok_emb.weight [V, D], pos_emb [context, D] (learned), blocks.{l}.ln1/attn/ln2,
// blocks.{l}.ffn.* (dense: fc1, fc2) or blocks.{l}.moe.*, ln_f, head.weight (untied only).
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/models/lm/attention.h"
#include "dynamoe/moe/layer_stats.h"
#include "dynamoe/moe/moe_layer.h"

namespace dynamoe::models::lm {

/// Per-block attention caches and the number of positions they hold.
struct KVCache {
  std::vector<LayerCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers[0].length; }
};

struct LMOutput {
  at::Tensor logits;                        ///< [B, T, V]
  at::Tensor aux_loss;                      ///< scalar sum of the MoE layers' auxiliary losses (undefined: none)
  std::vector<moe::LayerStats> moe_stats;   ///< one per MoE block
};

/// One pre-norm block: attention, then a dense or MoE feed-forward.
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const config::Config& cfg, int64_t n_experts, int64_t k_max, int64_t prev_experts);
  /// h [B, T, D] -> [B, T, D]; MoE blocks read and replace prev_logits (gating residual) and
  /// append their stats to out.
  at::Tensor forward(const at::Tensor& h, const at::Tensor& token_ids, LayerCache* cache, at::Tensor& prev_logits,
                     LMOutput& out);
  bool is_moe() const { return !moe_.is_empty(); }
  moe::MoELayer& moe_layer() { return moe_; }

 private:
  double dropout_;
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr};
  CausalSelfAttention attn_{nullptr};
  Projection fc1_{nullptr}, fc2_{nullptr};  ///< adapter attach points (models/projection.h)
  std::function<at::Tensor(const at::Tensor&)> act_;
  moe::MoELayer moe_{nullptr};
};
TORCH_MODULE(Block);

class TransformerLMImpl : public torch::nn::Module {
 public:
  TransformerLMImpl(const config::Config& cfg, int64_t vocab_size);
  /// ids [B, T] (int64, each in [0, V)) -> logits [B, T, V]. With a cache, ids continue the
  /// cached positions. Throws dynamoe::Error for an id out of range or a sequence longer than
  /// the context.
  LMOutput forward(const at::Tensor& ids, KVCache* cache = nullptr);
  /// An empty cache for this model.
  KVCache make_cache() const;
  /// Balancing-bias updates of the MoE layers (after each optimizer step).
  void after_step();
  int64_t vocab_size() const { return vocab_; }
  int64_t context() const { return context_; }
  /// Experts of each MoE block, in depth order (empty for a dense model).
  const std::vector<int64_t>& experts_per_moe_block() const { return experts_; }
  /// Trainable parameters, all of them and without the token/position embeddings (the
  /// convention of Kaplan et al.; the tied output projection counts as embedding).
  int64_t num_parameters() const;
  int64_t num_non_embedding_parameters() const;

 private:
  int64_t vocab_, dim_, context_;
  bool learned_positions_;
  torch::nn::Embedding tok_emb_{nullptr};
  at::Tensor pos_emb_;
  std::vector<Block> blocks_;
  torch::nn::LayerNorm ln_f_{nullptr};
  torch::nn::Linear head_{nullptr};
  std::vector<int64_t> experts_;
};
TORCH_MODULE(TransformerLM);

}  // namespace dynamoe::models::lm
