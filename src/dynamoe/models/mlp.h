#pragma once
// Dense MLP classifier: flatten -> [Linear -> norm -> act -> dropout] x len(hidden) -> Linear.
// Parameters: layers.{i}.weight/bias, norms.{i}.*, head.weight/bias.
//   auto m = std::make_shared<MLPClassifierImpl>(cfg.model, spec);
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include "dynamoe/models/classifier.h"

namespace dynamoe::models {

class MLPClassifierImpl : public ClassifierImpl {
 public:
  MLPClassifierImpl(const config::ModelConfig& cfg, const InputSpec& spec);
  ModelOutput forward(const at::Tensor& images) override;

 private:
  config::ModelConfig cfg_;
  std::vector<torch::nn::Linear> layers_;
  std::vector<std::shared_ptr<torch::nn::Module>> norms_;  // nullptr entries: no norm
  torch::nn::Linear head_{nullptr};
  std::function<at::Tensor(const at::Tensor&)> act_;
};

}  // namespace dynamoe::models
