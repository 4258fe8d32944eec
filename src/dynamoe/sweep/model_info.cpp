#include "dynamoe/sweep/model_info.h"

#include <torch/torch.h>

#include <string>

#include "dynamoe/models/classifier.h"

namespace dynamoe::sweep {

double ModelInfo::active_parameters(const std::vector<double>& active_per_layer) const {
  double total = static_cast<double>(dense_parameters);
  for (size_t l = 0; l < experts.size(); ++l) {
    total += static_cast<double>(always_params[l]);
    const double active = l < active_per_layer.size() ? active_per_layer[l] : static_cast<double>(experts[l]);
    if (experts[l] > 0) total += static_cast<double>(expert_params[l]) * active / static_cast<double>(experts[l]);
  }
  return total;
}

std::optional<ModelInfo> model_info(const config::Config& cfg) {
  models::InputSpec spec;  // MNIST and Fashion-MNIST: 1 x 28 x 28, 10 classes
  if (cfg.data.dataset == "cifar10") {
    spec.channels = 3;
    spec.height = spec.width = 32;
    spec.mean = {0.5, 0.5, 0.5};
    spec.std = {0.25, 0.25, 0.25};
  } else if (cfg.data.dataset != "mnist" && cfg.data.dataset != "fashion-mnist") {
    return std::nullopt;
  }
  torch::NoGradGuard no_grad;
  models::Classifier model = models::build_model(cfg, spec);
  ModelInfo info;
  info.convolutional = cfg.model.kind == "cnn" || cfg.model.kind == "moe_cnn";
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    const int64_t n = p.value().numel();
    info.parameters += n;
    // MoE layer parameters are named <...>.moe.<l>.<rest> (models/moe_stack.h).
    const size_t at = name.find("moe.");
    if (at == std::string::npos || (at > 0 && name[at - 1] != '.')) {
      info.dense_parameters += n;
      continue;
    }
    const size_t dot = name.find('.', at + 4);
    const size_t layer = std::stoul(name.substr(at + 4, dot - at - 4));
    if (info.experts.size() <= layer) {
      info.experts.resize(layer + 1, 0);
      info.expert_params.resize(layer + 1, 0);
      info.always_params.resize(layer + 1, 0);
    }
    if (name.compare(dot + 1, 8, "experts.") == 0) {
      info.expert_params[layer] += n;
    } else {
      info.always_params[layer] += n;
    }
  }
  // Experts per layer, special (parameter-free) experts included.
  for (const auto& m : model->named_modules()) {
    const std::string& name = m.key();
    const size_t at = name.find("moe.");
    if (at == std::string::npos || (at > 0 && name[at - 1] != '.')) continue;
    const size_t dot = name.find('.', at + 4);
    if (dot == std::string::npos || name.compare(dot + 1, std::string::npos, "experts") != 0) continue;
    const size_t layer = std::stoul(name.substr(at + 4, dot - at - 4));
    if (info.experts.size() <= layer) {
      info.experts.resize(layer + 1, 0);
      info.expert_params.resize(layer + 1, 0);
      info.always_params.resize(layer + 1, 0);
    }
    info.experts[layer] = static_cast<int64_t>(m.value()->children().size());
  }
  return info;
}

}  // namespace dynamoe::sweep
