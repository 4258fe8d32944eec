#pragma once
// ConvStem: [Conv3x3(pad 1) -> norm -> act -> MaxPool2] x len(channels), shared by the CNN and
// the MoE-CNN. Parameters: convs.{i}.weight/bias, norms.{i}.*.
#include <torch/nn/modules/conv.h>

#include <functional>
#include <memory>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/models/classifier.h"

namespace dynamoe::models {

class ConvStemImpl : public torch::nn::Module {
 public:
  ConvStemImpl(const config::ModelConfig& cfg, const InputSpec& spec);
  /// [N, C, H, W] -> [N, channels.back() * H' * W'] (flattened)
  at::Tensor forward(at::Tensor x);
  /// Width of the flattened output.
  int64_t out_features() const { return out_features_; }

 private:
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<std::shared_ptr<torch::nn::Module>> norms_;
  std::function<at::Tensor(const at::Tensor&)> act_;
  int64_t out_features_ = 0;
};
TORCH_MODULE(ConvStem);

}  // namespace dynamoe::models
