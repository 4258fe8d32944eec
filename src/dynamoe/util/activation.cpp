#include "dynamoe/util/activation.h"

#include <ATen/ATen.h>

#include "dynamoe/util/error.h"

namespace dynamoe {

std::function<at::Tensor(const at::Tensor&)> activation(const std::string& name) {
  if (name == "relu") return [](const at::Tensor& x) { return at::relu(x); };
  if (name == "gelu") return [](const at::Tensor& x) { return at::gelu(x); };
  if (name == "silu") return [](const at::Tensor& x) { return at::silu(x); };
  if (name == "tanh") return [](const at::Tensor& x) { return at::tanh(x); };
  throw ConfigError(str("config: activation '", name, "' is not one of relu, gelu, silu, tanh"));
}

}  // namespace dynamoe
