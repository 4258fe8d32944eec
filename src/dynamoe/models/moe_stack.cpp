#include "dynamoe/models/moe_stack.h"

#include <torch/torch.h>

#include <tuple>

#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/schedule.h"
#include "dynamoe/util/error.h"

namespace dynamoe::models {

MoEStackImpl::MoEStackImpl(const config::MoEConfig& cfg, int64_t dim, int64_t n_layers) {
  std::tie(experts_per_layer_, k_max_per_layer_) = experts_and_k_max(cfg, n_layers);
  // An image classifier has no token ids: a router that needs them is refused before any forward.
  if (moe::router_traits(cfg.router.kind()).needs_token_ids)
    throw ConfigError(str("config: moe.router.kind = '", cfg.router.kind(),
                          "' routes by token id, which only a language model has (model.kind = lm)"));
  torch::nn::ModuleList norms, layers;
  for (int64_t l = 0; l < n_layers; ++l) {
    norms_.push_back(torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
    norms->push_back(norms_.back());
    layers_.push_back(moe::MoELayer(models::moe_layer_options(
        cfg, dim, experts_per_layer_[l], k_max_per_layer_[l], l > 0 ? experts_per_layer_[l - 1] : 0)));
    layers->push_back(layers_.back());
  }
  register_module("norms", norms);
  register_module("moe", layers);
}

at::Tensor MoEStackImpl::forward(at::Tensor x, ModelOutput& out) {
  at::Tensor prev_logits;
  for (size_t l = 0; l < layers_.size(); ++l) {
    moe::MoELayerOutput o = layers_[l]->forward(norms_[l]->forward(x), prev_logits);
    x = x + o.y;  // [N, D]
    prev_logits = o.logits;
    out.aux_loss = out.aux_loss.defined() ? out.aux_loss + o.aux_loss : o.aux_loss;
    out.moe_stats.push_back(std::move(o.stats));
  }
  return x;
}

void MoEStackImpl::after_step() {
  for (auto& l : layers_) l->after_step();
}

}  // namespace dynamoe::models
