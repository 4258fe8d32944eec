#include "dynamoe/models/conv_stem.h"

#include <torch/torch.h>

#include "dynamoe/models/norm.h"
#include "dynamoe/util/activation.h"
#include "dynamoe/util/error.h"

namespace dynamoe::models {

ConvStemImpl::ConvStemImpl(const config::ModelConfig& cfg, const InputSpec& spec) : act_(dynamoe::activation(cfg.activation)) {
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
  out_features_ = in * h * w;
}

at::Tensor ConvStemImpl::forward(at::Tensor x) {
  for (size_t i = 0; i < convs_.size(); ++i)
    x = torch::max_pool2d(act_(apply_norm(norms_[i], convs_[i]->forward(x))), 2);  // [N, ch_i, H/2^i, W/2^i]
  return x.flatten(1);
}

}  // namespace dynamoe::models
