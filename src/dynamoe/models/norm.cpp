#include "dynamoe/models/norm.h"

#include <torch/torch.h>

#include "dynamoe/util/error.h"

namespace dynamoe::models {

std::shared_ptr<torch::nn::Module> make_norm(const std::string& kind, int64_t width, bool spatial) {
  if (kind == "none") return nullptr;
  if (kind == "batchnorm") {
    if (spatial) return torch::nn::BatchNorm2d(width).ptr();
    return torch::nn::BatchNorm1d(width).ptr();
  }
  if (kind == "layernorm") {
    // Spatial layernorm normalises over channels only (as in ConvNeXt), applied channels-last.
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})).ptr();
  }
  throw ConfigError(str("config: model.norm = '", kind, "' is not one of none, layernorm, batchnorm"));
}

at::Tensor apply_norm(const std::shared_ptr<torch::nn::Module>& m, const at::Tensor& x) {
  if (!m) return x;
  if (auto* ln = dynamic_cast<torch::nn::LayerNormImpl*>(m.get())) {
    if (x.dim() == 4) return ln->forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
    return ln->forward(x);
  }
  if (auto* bn = dynamic_cast<torch::nn::BatchNorm1dImpl*>(m.get())) return bn->forward(x);
  if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) return bn->forward(x);
  throw Error("internal: unknown norm module");
}

}  // namespace dynamoe::models
