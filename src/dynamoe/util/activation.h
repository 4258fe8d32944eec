#pragma once
// Elementwise activations by name, shared by the models and the experts.
//   auto act = dynamoe::activation("gelu");   at::Tensor y = act(x);
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

namespace dynamoe {

/// relu, gelu (exact, erf), silu or tanh; another name is a ConfigError listing these.
std::function<at::Tensor(const at::Tensor&)> activation(const std::string& name);

}  // namespace dynamoe
