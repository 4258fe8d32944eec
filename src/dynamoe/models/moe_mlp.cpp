#include "dynamoe/models/moe_mlp.h"

#include <torch/torch.h>


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

MoECNNClassifierImpl::MoECNNClassifierImpl(const config::Config& cfg, const InputSpec& spec) : ClassifierImpl(spec) {
  const int64_t D = cfg.model.d_model;
  stem_ = register_module("stem", ConvStem(cfg.model, spec));
  in_proj_ = register_module("in_proj", torch::nn::Linear(stem_->out_features(), D));
  stack_ = register_module("stack", MoEStack(cfg.moe, D, cfg.model.moe_layers));
  final_norm_ = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  head_ = register_module("head", torch::nn::Linear(D, spec.num_classes));
}

ModelOutput MoECNNClassifierImpl::forward(const at::Tensor& images) {
  ModelOutput out;
  at::Tensor x = in_proj_->forward(stem_->forward(normalise(images)));  // [N, D]
  x = stack_->forward(x, out);                                          // [N, D]
  out.logits = head_->forward(final_norm_->forward(x));                 // [N, K]
  return out;
}

}  // namespace dynamoe::models
