#pragma once
// Small CNN classifier: [Conv3x3(pad 1) -> norm -> act -> MaxPool2] x len(channels)
// -> flatten -> Linear(cnn_fc) -> act -> dropout -> Linear(K).
// Parameters: convs.{i}.weight/bias, norms.{i}.*, fc.weight/bias, head.weight/bias.
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "dynamoe/models/classifier.h"

namespace dynamoe::models {

class CNNClassifierImpl : public ClassifierImpl {
 public:
  CNNClassifierImpl(const config::ModelConfig& cfg, const InputSpec& spec);
  ModelOutput forward(const at::Tensor& images) override;

 private:
  config::ModelConfig cfg_;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<std::shared_ptr<torch::nn::Module>> norms_;
  torch::nn::Linear fc_{nullptr}, head_{nullptr};
  std::function<at::Tensor(const at::Tensor&)> act_;
};

}  // namespace dynamoe::models
