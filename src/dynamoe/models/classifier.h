#pragma once
// The classifier interface every model implements, and the registry that builds one by name.
// Shapes: N examples, C x H x W images, K classes.
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/data/input_spec.h"
#include "dynamoe/moe/layer_stats.h"

namespace dynamoe::models {

/// What the input looks like (data/input_spec.h).
using InputSpec = data::InputSpec;

/// A forward pass's result.
struct ModelOutput {
  at::Tensor logits;    ///< [N, K]
  at::Tensor aux_loss;  ///< scalar added to the task loss (undefined: none)
  std::vector<moe::LayerStats> moe_stats;  ///< one per MoE layer (empty for dense models)
};

/// Base of all classifiers. Input is raw uint8 or float pixels [N, C, H, W]; the model owns
/// its input normalisation (buffers `input_mean`, `input_std`), so checkpoints are
/// self-contained.
class ClassifierImpl : public torch::nn::Module {
 public:
  explicit ClassifierImpl(const InputSpec& spec);
  /// Logits (and auxiliary loss, if any) for a batch of images.
  virtual ModelOutput forward(const at::Tensor& images) = 0;
  /// Called after each optimizer step (MoE models update balancing biases here).
  virtual void after_step() {}
  /// Number of trainable parameters.
  int64_t num_parameters() const;
  const InputSpec& input_spec() const { return spec_; }

 protected:
  /// uint8 [N,C,H,W] or float in [0,1] -> normalised float [N,C,H,W].
  at::Tensor normalise(const at::Tensor& images) const;
  InputSpec spec_;
  at::Tensor input_mean_, input_std_;  // [1, C, 1, 1]
};

using Classifier = std::shared_ptr<ClassifierImpl>;
using ModelFactory = std::function<Classifier(const config::Config&, const InputSpec&)>;

/// Registers a model kind under `name` (called once per kind, see registry.cpp).
void register_model(const std::string& name, ModelFactory factory);
/// Builds the model named by cfg.model.kind; an unknown name lists the valid ones.
Classifier build_model(const config::Config& cfg, const InputSpec& spec);
/// Every registered model name, sorted.
std::vector<std::string> model_names();


}  // namespace dynamoe::models
