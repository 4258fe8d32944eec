#pragma once
// A double-precision gradient checker for tests: autograd against central differences.
//
//   auto fn = [](const std::vector<at::Tensor>& in) { return some_op(in[0], in[1]); };
//   GradCheck gc = gradcheck(fn, {at::randn({4, 3}, at::kDouble), at::randn({3}, at::kDouble)});
//   EXPECT_TRUE(gc.ok(1e-6, 1e-5)) << gc.summary();
//
// The scalar checked is L = sum(fn(inputs) * c) with a fixed random cotangent c of the output's
// shape. Its analytic gradient (torch::autograd::grad) is compared with
// (L(x + eps e_j) - L(x - eps e_j)) / (2 eps) for every element j of every input. fn must be
// deterministic (seed any generator inside fn) and smooth near the inputs: pick inputs away
// from selection boundaries.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace dynamoe::testutil {

/// The result of gradcheck(): the worst disagreement between autograd and finite differences.
struct GradCheck {
  double max_abs_error = 0;  ///< max_j |analytic_j - numeric_j|
  /// max_j |analytic_j - numeric_j| / max(|analytic_j|, |numeric_j|) over the entries where that
  /// denominator is >= 1e-4 (smaller entries are dominated by rounding noise; max_abs_error
  /// covers them).
  double max_rel_error = 0;
  int64_t worst_input = -1;  ///< input index of the entry with the largest absolute error
  int64_t worst_index = -1;  ///< its flat element index in that input
  double worst_analytic = 0;
  double worst_numeric = 0;
  int64_t checked = 0;           ///< number of gradient entries compared
  std::vector<double> analytic;  ///< every analytic entry, inputs concatenated
  std::vector<double> numeric;   ///< the matching central differences

  /// True when every entry satisfies |analytic - numeric| <= atol + rtol * |numeric|.
  bool ok(double atol = 1e-6, double rtol = 1e-5) const {
    for (size_t j = 0; j < analytic.size(); ++j)
      if (!(std::abs(analytic[j] - numeric[j]) <= atol + rtol * std::abs(numeric[j]))) return false;
    return true;
  }
  /// One line for an assertion message.
  std::string summary() const {
    std::ostringstream os;
    os << "gradcheck: " << checked << " entries, max abs error " << max_abs_error << ", max rel error "
       << max_rel_error << "; worst at input " << worst_input << " element " << worst_index << ": autograd "
       << worst_analytic << " vs numeric " << worst_numeric;
    return os.str();
  }
};

/// Compares autograd with central differences (step eps) for fn at `inputs` (converted to
/// double; they need not require grad). `seed` fixes the random cotangent.
inline GradCheck gradcheck(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& fn,
                           const std::vector<at::Tensor>& inputs, double eps = 1e-6, uint64_t seed = 1234) {
  std::vector<at::Tensor> x;  // leaves
  for (const at::Tensor& t : inputs) x.push_back(t.detach().to(at::kDouble).contiguous().clone().requires_grad_(true));

  at::Tensor out = fn(x);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor cot = at::randn(out.sizes(), gen, at::TensorOptions().dtype(at::kDouble));
  at::Tensor loss = (out.to(at::kDouble) * cot).sum();
  std::vector<at::Tensor> grads = torch::autograd::grad({loss}, x, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                                        /*create_graph=*/false, /*allow_unused=*/true);

  GradCheck r;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> xp;
  for (const at::Tensor& t : x) xp.push_back(t.detach().clone());
  auto eval = [&] { return (fn(xp).to(at::kDouble) * cot).sum().item<double>(); };
  double worst = -1;
  for (size_t i = 0; i < xp.size(); ++i) {
    at::Tensor g = grads[i].defined() ? grads[i].contiguous() : at::zeros_like(xp[i]);
    const double* ga = g.data_ptr<double>();
    double* v = xp[i].data_ptr<double>();
    for (int64_t j = 0; j < xp[i].numel(); ++j) {
      const double saved = v[j];
      v[j] = saved + eps;
      const double plus = eval();
      v[j] = saved - eps;
      const double minus = eval();
      v[j] = saved;
      const double num = (plus - minus) / (2 * eps);
      const double err = std::abs(ga[j] - num);
      r.analytic.push_back(ga[j]);
      r.numeric.push_back(num);
      r.max_abs_error = std::max(r.max_abs_error, err);
      const double scale = std::max(std::abs(ga[j]), std::abs(num));
      if (scale >= 1e-4) r.max_rel_error = std::max(r.max_rel_error, err / scale);
      if (err > worst) {
        worst = err;
        r.worst_input = static_cast<int64_t>(i);
        r.worst_index = j;
        r.worst_analytic = ga[j];
        r.worst_numeric = num;
      }
      ++r.checked;
    }
  }
  return r;
}

}  // namespace dynamoe::testutil
