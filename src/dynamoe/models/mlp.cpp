#include "dynamoe/models/mlp.h"

#include <torch/torch.h>

#include "dynamoe/models/norm.h"
#include "dynamoe/util/activation.h"

namespace dynamoe::models {

MLPClassifierImpl::MLPClassifierImpl(const config::ModelConfig& cfg, const InputSpec& spec)
    : ClassifierImpl(spec), cfg_(cfg), act_(dynamoe::activation(cfg.activation)) {
  torch::nn::ModuleList layers, norms;
  int64_t in = spec.features();
  for (int64_t width : cfg.hidden) {
    layers_.push_back(torch::nn::Linear(in, width));
    layers->push_back(layers_.back());
    norms_.push_back(make_norm(cfg.norm, width, /*spatial=*/false));
    if (norms_.back()) norms->push_back(norms_.back());
    in = width;
  }
  register_module("layers", layers);
  if (!norms->is_empty()) register_module("norms", norms);
  head_ = register_module("head", torch::nn::Linear(in, spec.num_classes));
}

ModelOutput MLPClassifierImpl::forward(const at::Tensor& images) {
  at::Tensor x = normalise(images).flatten(1);  // [N, C*H*W]
  for (size_t i = 0; i < layers_.size(); ++i) {
    x = apply_norm(norms_[i], layers_[i]->forward(x));  // [N, hidden_i]
    x = torch::dropout(act_(x), cfg_.dropout, is_training());
  }
  return {head_->forward(x), {}, {}};  // [N, K]
}

}  // namespace dynamoe::models
