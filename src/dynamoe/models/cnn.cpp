#include "dynamoe/models/cnn.h"

#include <torch/torch.h>

#include "dynamoe/util/activation.h"

namespace dynamoe::models {

CNNClassifierImpl::CNNClassifierImpl(const config::ModelConfig& cfg, const InputSpec& spec)
    : ClassifierImpl(spec), cfg_(cfg), act_(dynamoe::activation(cfg.activation)) {
  stem_ = register_module("stem", ConvStem(cfg, spec));
  fc_ = register_module("fc", torch::nn::Linear(stem_->out_features(), cfg.cnn_fc));
  head_ = register_module("head", torch::nn::Linear(cfg.cnn_fc, spec.num_classes));
}

ModelOutput CNNClassifierImpl::forward(const at::Tensor& images) {
  at::Tensor x = stem_->forward(normalise(images));                                // [N, F]
  x = torch::dropout(act_(fc_->forward(x)), cfg_.dropout, is_training());          // [N, cnn_fc]
  return {head_->forward(x), {}, {}};                                              // [N, K]
}

}  // namespace dynamoe::models
