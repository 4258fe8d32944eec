#include "dynamoe/adapters/lora.h"

#include <torch/torch.h>

#include <cmath>
#include <regex>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/util/error.h"

namespace dynamoe::adapters {

void LoraOptions::validate() const {
  if (rank_ < 1) throw ConfigError(str("lora: rank = ", rank_, " must be at least 1"));
  if (!(alpha_ > 0) || !std::isfinite(alpha_)) throw ConfigError(str("lora: alpha = ", alpha_, " must be positive"));
  if (!(dropout_ >= 0 && dropout_ < 1)) throw ConfigError(str("lora: dropout = ", dropout_, " must be in [0, 1)"));
}

LoraImpl::LoraImpl(int64_t in_features, int64_t out_features, const LoraOptions& options) : options_(options) {
  options_.validate();
  torch::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  lora_A = register_parameter("lora_A", torch::empty({options_.rank(), in_features}).uniform_(-bound, bound));
  lora_B = register_parameter("lora_B", torch::zeros({out_features, options_.rank()}));
}

at::Tensor LoraImpl::forward(const at::Tensor& x) {
  at::Tensor h = x;
  // Drawn for the whole batch when it is split over processes (the same mask as one process).
  if (is_training() && options_.dropout() > 0) h = dist::batch_dropout(h, options_.dropout(), /*train=*/true);
  const at::Tensor down = at::linear(h, lora_A.to(h.scalar_type()));     // [.., r]
  return at::linear(down, lora_B.to(h.scalar_type())) * scaling();        // [.., out]
}

at::Tensor LoraImpl::delta_weight() const { return at::matmul(lora_B, lora_A) * scaling(); }  // [out, in]

std::vector<std::string> attach_adapters(torch::nn::Module& model, const std::string& pattern, const std::string& what,
                                         const std::function<std::shared_ptr<models::Adapter>(int64_t, int64_t)>& make) {
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw ConfigError(str(what, ": target pattern '", pattern, "' is not a valid regular expression (", e.what(), ")"));
  }
  std::vector<std::string> names;
  auto projections = models::named_projections(model);
  for (auto& [name, p] : projections) {
    if (!std::regex_search(name, re)) continue;
    p->set_adapter(make(p->in_features(), p->out_features()));
    names.push_back(name);
  }
  if (names.empty()) {
    std::string some;
    for (size_t i = 0; i < projections.size() && i < 7; ++i) some += (i ? ", " : "") + projections[i].first;
    throw ConfigError(str(what, ": target pattern '", pattern, "' matches no projection (they are named like ", some, ")"));
  }
  return names;
}

std::vector<std::string> attach_lora(torch::nn::Module& model, const std::string& pattern, const LoraOptions& options) {
  options.validate();
  return attach_adapters(model, pattern, "lora", [&](int64_t in, int64_t out) { return std::make_shared<LoraImpl>(in, out, options); });
}

std::vector<std::string> merge_lora(torch::nn::Module& model) {
  std::vector<std::string> merged;
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : models::named_projections(model)) {
    if (!p->adapter()) continue;
    auto lora = std::dynamic_pointer_cast<LoraImpl>(p->adapter());
    if (!lora) throw Error(str("merge: the adapter of ", name, " is not a LoRA adapter; only LoRA can be merged into the base"));
    p->weight.add_(lora->delta_weight().to(p->weight.scalar_type()));
    p->clear_adapter();
    merged.push_back(name);
  }
  return merged;
}

}  // namespace dynamoe::adapters
