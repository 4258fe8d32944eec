#include "dynamoe/models/moe_mlp.h"

#include <torch/torch.h>

#include "dynamoe/models/norm.h"
#include "dynamoe/util/error.h"

namespace dynamoe::models {

MoEMLPClassifierImpl::MoEMLPClassifierImpl(const config::Config& cfg, const InputSpec& spec) : ClassifierImpl(spec) {
  const int64_t D = cfg.model.d_model;
  in_proj_ = register_module("in_proj", torch::nn::Linear(spec.features(), D));
  stack_ = register_module("stack", MoEStack(cfg.moe, D, cfg.model.moe_layers));
  final_norm_ = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  head_ = register_module("head", torch::nn::Linear(D, spec.num_classes));
}

ModelOutput MoEMLPClassifierImpl::forward(const at::Tensor& images) {
  ModelOutput out;
  at::Tensor x = in_proj_->forward(normalise(images).flatten(1));  // [N, D]
  x = stack_->forward(x, out);                                       // [N, D]
  out.logits = head_->forward(final_norm_->forward(x));              // [N, K]
  return out;
}

MoECNNClassifierImpl::MoECNNClassifierImpl(const config::Config& cfg, const InputSpec& spec)
    : ClassifierImpl(spec), cfg_(cfg.model), act_(activation(cfg.model.activation)) {
  torch::nn::ModuleList convs, norms;
  int64_t in = spec.channels, h = spec.height, w = spec.width;
  for (int64_t ch : cfg.model.channels) {
    DYNAMOE_CHECK(h >= 2 && w >= 2, "config: model.channels has ", cfg.model.channels.size(),
                  " entries, too many 2x2 poolings for ", spec.height, "x", spec.width, " images");
    convs_.push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, ch, 3).padding(1)));
    convs->push_back(convs_.back());
    norms_.push_back(make_norm(cfg.model.norm, ch, /*spatial=*/true));
    if (norms_.back()) norms->push_back(norms_.back());
    in = ch, h /= 2, w /= 2;
  }
  register_module("convs", convs);
  if (!norms->is_empty()) register_module("norms", norms);
  const int64_t D = cfg.model.d_model;
  in_proj_ = register_module("in_proj", torch::nn::Linear(in * h * w, D));
  stack_ = register_module("stack", MoEStack(cfg.moe, D, cfg.model.moe_layers));
  final_norm_ = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  head_ = register_module("head", torch::nn::Linear(D, spec.num_classes));
}

ModelOutput MoECNNClassifierImpl::forward(const at::Tensor& images) {
  ModelOutput out;
  at::Tensor x = normalise(images);  // [N, C, H, W]
  for (size_t i = 0; i < convs_.size(); ++i) x = torch::max_pool2d(act_(apply_norm(norms_[i], convs_[i]->forward(x))), 2);
  x = in_proj_->forward(x.flatten(1));                  // [N, D]
  x = stack_->forward(x, out);                          // [N, D]
  out.logits = head_->forward(final_norm_->forward(x));  // [N, K]
  return out;
}

}  // namespace dynamoe::models
