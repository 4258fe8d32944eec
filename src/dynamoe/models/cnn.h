#pragma once
// Small CNN classifier: ConvStem -> Linear(cnn_fc) -> act -> dropout -> Linear(K).
// Parameters: stem.convs.{i}.*, stem.norms.{i}.*, fc.weight/bias, head.weight/bias.
#include <torch/nn/modules/linear.h>

#include "dynamoe/models/classifier.h"
#include "dynamoe/models/conv_stem.h"

namespace dynamoe::models {

class CNNClassifierImpl : public ClassifierImpl {
 public:
  CNNClassifierImpl(const config::ModelConfig& cfg, const InputSpec& spec);
  ModelOutput forward(const at::Tensor& images) override;

 private:
  config::ModelConfig cfg_;
  ConvStem stem_{nullptr};
  torch::nn::Linear fc_{nullptr}, head_{nullptr};
  std::function<at::Tensor(const at::Tensor&)> act_;
};

}  // namespace dynamoe::models
