#include "dynamoe/models/cnn.h"

#include <torch/torch.h>

#include "dynamoe/models/norm.h"
#include "dynamoe/util/error.h"

namespace dynamoe::models {

CNNClassifierImpl::CNNClassifierImpl(const config::ModelConfig& cfg, const InputSpec& spec)
    : ClassifierImpl(spec), cfg_(cfg), act_(activation(cfg.activation)) {
  torch::nn::ModuleList convs, norms;
  int64_t in = spec.channels, h = spec.height, w = spec.width;
  for (int64_t ch : cfg.channels) {
    DYNAMOE_CHECK(h >= 2 && w >= 2, "config: model.channels has ", cfg.channels.size(),
                  " entries, too many 2x2 poolings for ", spec.height, "x", spec.width, " images");
    convs_.push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, ch, 3).padding(1)));
    convs->push_back(convs_.back());
    norms_.push_back(make_norm(cfg.norm, ch, /*spatial=*/true));
    if (norms_.back()) norms->push_back(norms_.back());
    in = ch, h /= 2, w /= 2;
  }
  register_module("convs", convs);
  if (!norms->is_empty()) register_module("norms", norms);
  fc_ = register_module("fc", torch::nn::Linear(in * h * w, cfg.cnn_fc));
  head_ = register_module("head", torch::nn::Linear(cfg.cnn_fc, spec.num_classes));
}

ModelOutput CNNClassifierImpl::forward(const at::Tensor& images) {
  at::Tensor x = normalise(images);  // [N, C, H, W]
  for (size_t i = 0; i < convs_.size(); ++i)
    x = torch::max_pool2d(act_(apply_norm(norms_[i], convs_[i]->forward(x))), 2);  // [N, ch_i, H/2^i, W/2^i]
  x = torch::dropout(act_(fc_->forward(x.flatten(1))), cfg_.dropout, is_training());  // [N, cnn_fc]
  return {head_->forward(x), {}};  // [N, K]
}

}  // namespace dynamoe::models
