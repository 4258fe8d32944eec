#pragma once
// Normalisation layers chosen by name (none | layernorm | batchnorm) for MLP and CNN blocks.
#include <torch/nn/module.h>

#include <memory>
#include <string>

namespace dynamoe::models {

/// A norm over `width` features (spatial: for [N, C, H, W] activations); nullptr for "none".
std::shared_ptr<torch::nn::Module> make_norm(const std::string& kind, int64_t width, bool spatial);
/// Applies a module made by make_norm; identity when m is nullptr.
at::Tensor apply_norm(const std::shared_ptr<torch::nn::Module>& m, const at::Tensor& x);

}  // namespace dynamoe::models
