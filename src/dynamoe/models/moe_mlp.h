#pragma once
// MoE-MLP classifier: flatten -> Linear(d_model) -> MoEStack (model.moe_layers blocks, experts
// per layer from the moe schedule) -> LayerNorm -> Linear(K).
// Parameters: in_proj.*, stack.*, final_norm.*, head.*.
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "dynamoe/models/classifier.h"
#include "dynamoe/models/conv_stem.h"
#include "dynamoe/models/moe_stack.h"

namespace dynamoe::models {

class MoEMLPClassifierImpl : public ClassifierImpl {
 public:
  MoEMLPClassifierImpl(const config::Config& cfg, const InputSpec& spec);
  ModelOutput forward(const at::Tensor& images) override;
  void after_step() override { stack_->after_step(); }

 private:
  torch::nn::Linear in_proj_{nullptr}, head_{nullptr};
  MoEStack stack_{nullptr};
  torch::nn::LayerNorm final_norm_{nullptr};
};

/// MoE-CNN classifier: ConvStem, then Linear(d_model) -> MoEStack -> LayerNorm -> Linear(K).
/// Parameters: stem.*, in_proj.*, stack.*, final_norm.*, head.*.
class MoECNNClassifierImpl : public ClassifierImpl {
 public:
  MoECNNClassifierImpl(const config::Config& cfg, const InputSpec& spec);
  ModelOutput forward(const at::Tensor& images) override;
  void after_step() override { stack_->after_step(); }

 private:
  ConvStem stem_{nullptr};
  torch::nn::Linear in_proj_{nullptr}, head_{nullptr};
  MoEStack stack_{nullptr};
  torch::nn::LayerNorm final_norm_{nullptr};
};

}  // namespace dynamoe::models
