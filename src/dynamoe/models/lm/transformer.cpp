#include "dynamoe/models/lm/transformer.h"

#include <torch/torch.h>

#include <tuple>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/schedule.h"
#include "dynamoe/util/activation.h"
#include "dynamoe/util/error.h"

namespace dynamoe::models::lm {
namespace {

bool block_is_moe(const config::LMConfig& c, int64_t l) {
  return c.moe_every == 1 || (c.moe_every == 2 && l % 2 == 1);
}

}  // namespace

BlockImpl::BlockImpl(const config::Config& cfg, int64_t n_experts, int64_t k_max, int64_t prev_experts)
    : dropout_(cfg.model.dropout) {
  const int64_t D = cfg.model.d_model;
  ln1_ = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  attn_ = register_module("attn", CausalSelfAttention(AttentionOptions()
                                                          .dim(D)
                                                          .heads(cfg.lm.heads)
                                                          .capacity(cfg.lm.context)
                                                          .positions(cfg.lm.positions)
                                                          .rope_base(cfg.lm.rope_base)
                                                          .activation(cfg.lm.attention_activation)));
  ln2_ = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  if (n_experts > 0) {
    moe_ = register_module("moe", moe::MoELayer(models::moe_layer_options(cfg.moe, D, n_experts, k_max,
                                                                                   prev_experts)));
  } else {
    const int64_t F = cfg.lm.d_ff > 0 ? cfg.lm.d_ff : 4 * D;
    fc1_ = register_module("fc1", Projection(D, F, true, ProjectionInit::kLinear));
    fc2_ = register_module("fc2", Projection(F, D, true, ProjectionInit::kLinear));
    act_ = dynamoe::activation(cfg.model.activation);
  }
}

at::Tensor BlockImpl::forward(const at::Tensor& h_in, const at::Tensor& token_ids, LayerCache* cache,
                              at::Tensor& prev_logits, LMOutput& out) {
  const bool train = is_training() && dropout_ > 0;
  at::Tensor h = h_in + dist::batch_dropout(attn_->forward(ln1_->forward(h_in), cache), dropout_, train);  // [B, T, D]
  at::Tensor x = ln2_->forward(h);
  at::Tensor f;
  if (is_moe()) {
    const int64_t D = x.size(2);
    moe::MoELayerOutput o = moe_->forward(x.reshape({-1, D}), prev_logits, token_ids);  // [N, D]
    f = o.y.view(x.sizes());
    prev_logits = o.logits;
    out.aux_loss = out.aux_loss.defined() ? out.aux_loss + o.aux_loss : o.aux_loss;
    out.moe_stats.push_back(std::move(o.stats));
  } else {
    f = fc2_->forward(act_(fc1_->forward(x)));
  }
  return h + dist::batch_dropout(f, dropout_, train);
}

TransformerLMImpl::TransformerLMImpl(const config::Config& cfg, int64_t vocab_size)
    : vocab_(vocab_size), dim_(cfg.model.d_model), context_(cfg.lm.context),
      learned_positions_(cfg.lm.positions == "learned") {
  DYNAMOE_CHECK(vocab_size > 0, "lm: vocabulary size ", vocab_size, " must be positive");
  const config::LMConfig& c = cfg.lm;
  int64_t n_moe = 0;
  for (int64_t l = 0; l < c.layers; ++l) n_moe += block_is_moe(c, l);
  std::vector<int64_t> k_max(n_moe, 0);
  if (n_moe > 0) {
    std::tie(experts_, k_max) = experts_and_k_max(cfg.moe, n_moe);
  }
  tok_emb_ = register_module("tok_emb", torch::nn::Embedding(vocab_size, dim_));
  torch::nn::init::normal_(tok_emb_->weight, 0.0, 0.02);
  if (learned_positions_) pos_emb_ = register_parameter("pos_emb", torch::randn({context_, dim_}) * 0.02);
  torch::nn::ModuleList blocks;
  int64_t m = 0;
  for (int64_t l = 0; l < c.layers; ++l) {
    const bool is_moe = block_is_moe(c, l);
    const int64_t prev = is_moe && m > 0 && cfg.moe.gate_residual ? experts_[m - 1] : 0;
    blocks_.push_back(Block(cfg, is_moe ? experts_[m] : 0, is_moe ? k_max[m] : 0, prev));
    blocks->push_back(blocks_.back());
    m += is_moe;
  }
  register_module("blocks", blocks);
  ln_f_ = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim_})));
  if (!c.tie_embeddings) {
    head_ = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(dim_, vocab_size).bias(false)));
    torch::nn::init::normal_(head_->weight, 0.0, 0.02);
  }
}

LMOutput TransformerLMImpl::forward(const at::Tensor& ids, KVCache* cache) {
  DYNAMOE_CHECK(ids.dim() == 2 && ids.scalar_type() == at::kLong, "lm: expected token ids [B, T] of int64, got ",
                ids.sizes(), " of ", ids.scalar_type());
  const int64_t B = ids.size(0), T = ids.size(1), offset = cache ? cache->length() : 0;
  DYNAMOE_CHECK(T > 0, "lm: empty input");
  DYNAMOE_CHECK(offset + T <= context_, "lm: ", offset + T, " positions are longer than the context of ", context_,
                " tokens (lm.context)");
  {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= vocab_) {
      const int64_t bad = lo < 0 ? lo : hi;
      const int64_t at_pos = (ids == bad).nonzero()[0][1].item<int64_t>();
      throw Error(str("lm: token id ", bad, " at position ", at_pos, " is out of range for the vocabulary of ", vocab_));
    }
  }
  if (cache && cache->layers.size() != blocks_.size()) cache->layers.assign(blocks_.size(), LayerCache{});
  LMOutput out;
  at::Tensor h = tok_emb_->forward(ids);  // [B, T, D]
  if (learned_positions_) h = h + pos_emb_.narrow(0, offset, T);
  const at::Tensor flat_ids = ids.reshape({-1});  // [N] (hash routing)
  at::Tensor prev_logits;
  for (size_t l = 0; l < blocks_.size(); ++l)
    h = blocks_[l]->forward(h, flat_ids, cache ? &cache->layers[l] : nullptr, prev_logits, out);
  h = ln_f_->forward(h);
  out.logits = head_.is_empty() ? at::matmul(h, tok_emb_->weight.t()) : head_->forward(h);  // [B, T, V]
  (void)B;
  return out;
}

KVCache TransformerLMImpl::make_cache() const {
  KVCache c;
  c.layers.assign(blocks_.size(), LayerCache{});
  return c;
}

void TransformerLMImpl::after_step() {
  for (auto& b : blocks_)
    if (b->is_moe()) b->moe_layer()->after_step();
}

int64_t TransformerLMImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

int64_t TransformerLMImpl::num_non_embedding_parameters() const {
  int64_t n = num_parameters() - tok_emb_->weight.numel();
  if (learned_positions_) n -= pos_emb_.numel();
  if (!head_.is_empty()) n -= head_->weight.numel();
  return n;
}

}  // namespace dynamoe::models::lm
