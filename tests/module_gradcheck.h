#pragma once
// Double-precision gradient check of a module: autograd gradients of sum(f(x) * c) with respect
// to the input and to every parameter, against central differences of the same scalar.
#include <torch/torch.h>

#include <functional>
#include <string>

namespace dynamoe::testutil {

struct ModuleGradCheck {
  double max_abs_error = 0;
  std::string worst;  ///< which tensor and element
  int64_t checked = 0;
};

/// `forward` maps the (double) input to an output tensor using the (double) module.
inline ModuleGradCheck module_gradcheck(torch::nn::Module& m, const at::Tensor& input,
                                        const std::function<at::Tensor(const at::Tensor&)>& forward,
                                        double eps = 1e-6, uint64_t seed = 99) {
  m.to(torch::kDouble);
  at::Tensor x = input.detach().to(torch::kDouble).clone().requires_grad_(true);
  at::Tensor out = forward(x);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor cot = at::randn(out.sizes(), gen, torch::TensorOptions().dtype(torch::kDouble));
  for (auto& p : m.parameters()) p.mutable_grad() = at::Tensor();
  if (out.requires_grad()) (out * cot).sum().backward();  // (the zero expert has no graph)
  std::vector<std::pair<std::string, at::Tensor>> tensors = {{"input", x}};
  for (const auto& p : m.named_parameters()) tensors.emplace_back(p.key(), p.value());
  ModuleGradCheck r;
  torch::NoGradGuard no_grad;
  auto value = [&] { return (forward(x) * cot).sum().item<double>(); };
  for (auto& [name, t] : tensors) {
    at::Tensor g = t.grad().defined() ? t.grad().clone() : torch::zeros_like(t);
    at::Tensor flat = t.view({-1});
    for (int64_t j = 0; j < t.numel(); ++j) {
      const double saved = flat[j].item<double>();
      flat[j] = saved + eps;
      const double plus = value();
      flat[j] = saved - eps;
      const double minus = value();
      flat[j] = saved;
      const double err = std::abs((plus - minus) / (2 * eps) - g.view({-1})[j].item<double>());
      ++r.checked;
      if (err > r.max_abs_error) {
        r.max_abs_error = err;
        r.worst = name + "[" + std::to_string(j) + "]";
      }
    }
  }
  return r;
}

}  // namespace dynamoe::testutil
