#include "dynamoe/models/projection.h"

#include <torch/torch.h>

#include <cmath>

#include "dynamoe/util/error.h"

namespace dynamoe::models {

ProjectionImpl::ProjectionImpl(int64_t in_features, int64_t out_features, bool with_bias, ProjectionInit init)
    : in_(in_features), out_(out_features) {
  torch::NoGradGuard no_grad;
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}));
  if (init == ProjectionInit::kNormal) {
    weight.normal_(0.0, 0.02);
  } else {
    // torch::nn::LinearImpl::reset_parameters, draw for draw.
    torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (with_bias) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
      torch::nn::init::uniform_(bias, -bound, bound);
    }
  }
}

at::Tensor ProjectionImpl::forward(const at::Tensor& x) {
  at::Tensor y = at::linear(x, weight, bias);  // [.., out]
  if (adapter_) y = y + adapter_->forward(x);
  return y;
}

void ProjectionImpl::set_adapter(std::shared_ptr<Adapter> adapter) {
  DYNAMOE_CHECK(adapter != nullptr, "projection: set_adapter got a null adapter (use clear_adapter)");
  clear_adapter();
  adapter_ = register_module("adapter", std::move(adapter));
}

void ProjectionImpl::clear_adapter() {
  if (adapter_) unregister_module("adapter");
  adapter_ = nullptr;
}

std::vector<std::pair<std::string, Projection>> named_projections(const torch::nn::Module& model) {
  std::vector<std::pair<std::string, Projection>> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    // Skip projections inside an adapter of an outer projection.
    if (!out.empty() && item.key().rfind(out.back().first + ".", 0) == 0) continue;
    if (auto p = std::dynamic_pointer_cast<ProjectionImpl>(item.value())) out.emplace_back(item.key(), Projection(p));
  }
  return out;
}

}  // namespace dynamoe::models
