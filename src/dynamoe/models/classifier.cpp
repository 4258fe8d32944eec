#include "dynamoe/models/classifier.h"

#include <torch/torch.h>

#include <map>

#include "dynamoe/util/error.h"

namespace dynamoe::models {

ClassifierImpl::ClassifierImpl(const InputSpec& spec) : spec_(spec) {
  DYNAMOE_CHECK(static_cast<int64_t>(spec.mean.size()) == spec.channels &&
                    static_cast<int64_t>(spec.std.size()) == spec.channels,
                "input normalisation needs one mean and std per channel (", spec.channels, ")");
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  input_mean_ = register_buffer("input_mean", torch::tensor(spec.mean, opts).view({1, -1, 1, 1}));
  input_std_ = register_buffer("input_std", torch::tensor(spec.std, opts).view({1, -1, 1, 1}));
}

int64_t ClassifierImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

at::Tensor ClassifierImpl::normalise(const at::Tensor& images) const {
  DYNAMOE_CHECK(images.dim() == 4 && images.size(1) == spec_.channels && images.size(2) == spec_.height &&
                    images.size(3) == spec_.width,
                "model input: expected [N, ", spec_.channels, ", ", spec_.height, ", ", spec_.width,
                "], got ", images.sizes());
  at::Tensor x = images.scalar_type() == torch::kByte ? images.to(torch::kFloat).div_(255.0)
                                                      : images.to(torch::kFloat);
  return (x - input_mean_) / input_std_;  // [N, C, H, W]
}

namespace {
std::map<std::string, ModelFactory>& registry() {
  static std::map<std::string, ModelFactory> r;
  return r;
}
}  // namespace

void register_model(const std::string& name, ModelFactory factory) {
  DYNAMOE_CHECK(!registry().count(name), "model '", name, "' registered twice");
  registry()[name] = std::move(factory);
}

void register_builtin_models();  // registry.cpp

std::vector<std::string> model_names() {
  register_builtin_models();
  std::vector<std::string> names;
  for (const auto& kv : registry()) names.push_back(kv.first);
  return names;
}

Classifier build_model(const config::Config& cfg, const InputSpec& spec) {
  register_builtin_models();
  auto it = registry().find(cfg.model.kind);
  if (it == registry().end()) {
    std::string valid;
    for (const auto& n : model_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw ConfigError(str("config: model.kind = '", cfg.model.kind, "' is not a known model (valid: ", valid, ")"));
  }
  return it->second(cfg, spec);
}

}  // namespace dynamoe::models
