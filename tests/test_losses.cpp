// Auxiliary losses: values against an independent torch computation (Python, double, literal
// numbers below), hand-computed cases, double-precision gradient checks by central differences,
// E = 1, empty batches, and aux_losses() coefficients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>

#include "dynamoe/moe/losses.h"
#include "dynamoe/util/error.h"

using dynamoe::moe::aux_losses;
using dynamoe::moe::AuxLosses;
using dynamoe::moe::entropy_loss;
using dynamoe::moe::load_balance_loss;
using dynamoe::moe::LossCoefficients;
using dynamoe::moe::Routing;
using dynamoe::moe::tsallis_entropy_normalized;
using dynamoe::moe::tsallis_loss;
using dynamoe::moe::z_loss;

namespace {

/// The fixed example: N = 4 tokens, E = 3 experts.
torch::Tensor example_logits(torch::Dtype dtype = torch::kFloat64) {
  return torch::tensor({1.0, -0.5, 0.25, 0.3, 0.3, -1.2, -2.0, 1.5, 0.5, 0.0, 0.1, 2.2}, dtype).view({4, 3});
}
torch::Tensor example_mask() {
  return torch::tensor({1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1}).view({4, 3}).to(torch::kBool);
}

/// A Routing built by hand: probs = softmax(z), the given fixed mask, weights = probs * mask.
Routing make_routing(const torch::Tensor& z, const torch::Tensor& mask) {
  Routing r;
  r.logits = z;
  r.probs = torch::softmax(z, 1);
  r.mask = mask;
  r.weights = r.probs * mask.to(r.probs.scalar_type());
  return r;
}

/// Max |autograd - central difference| of d f(z) / d z, in double precision.
double gradcheck_error(const std::function<torch::Tensor(const torch::Tensor&)>& f, const torch::Tensor& z0) {
  torch::Tensor z = z0.to(torch::kFloat64).detach().clone().requires_grad_(true);
  const torch::Tensor analytic = torch::autograd::grad({f(z)}, {z})[0];
  const double h = 1e-6;
  torch::Tensor numeric = torch::zeros_like(z0, torch::kFloat64);
  torch::NoGradGuard no_grad;
  auto flat = z.detach().clone().view(-1);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double orig = flat[i].item<double>();
    flat[i] = orig + h;
    const double plus = f(flat.view(z0.sizes())).item<double>();
    flat[i] = orig - h;
    const double minus = f(flat.view(z0.sizes())).item<double>();
    flat[i] = orig;
    numeric.view(-1)[i] = (plus - minus) / (2 * h);
  }
  EXPECT_GT(numeric.abs().max().item<double>(), 1e-8) << "gradient check of a constant function";
  return (analytic - numeric).abs().max().item<double>();
}

double val(const torch::Tensor& t) {
  EXPECT_EQ(t.dim(), 0);
  return t.item<double>();
}

}  // namespace

// Reference values: /usr/bin/python3, torch 1.13, float64, written independently from docs/methods.md section 4:
//   p = torch.softmax(z, 1); w = p * mask; E = 3
//   load_balance = E * ((mask.sum(0) / mask.sum()) * p.mean(0)).sum()
//   z_loss = (torch.logsumexp(z, 1) ** 2).mean();  entropy = (-(p * p.log()).sum(1)).mean()
//   hnorm(p, q, eps) = ((1 - ((p + eps) ** q).sum(1)) / (q - 1)) / ((1 - E ** (1 - q)) / (q - 1))
//                      (q = 1: -(p * p.log()).sum(1) / log(E))
//   tsallis = 0.01 * hnorm(p, q, eps).mean() + 0.001 * E * (w.mean(0) * p.mean(0)).sum()
//   (token_mask: the same on p[tok], w[tok])
TEST(Losses, MatchTorchReferenceDouble) {
  const Routing r = make_routing(example_logits(), example_mask());
  EXPECT_NEAR(val(load_balance_loss(r)), 1.0170882297504646, 1e-14);
  EXPECT_NEAR(val(z_loss(r)), 3.179093673964357, 1e-14);
  EXPECT_NEAR(val(entropy_loss(r)), 0.793366112302469, 1e-14);
  EXPECT_NEAR(val(tsallis_loss(r, 1.1, 1e-5)), 0.008069187888815804, 1e-15);
  EXPECT_NEAR(val(tsallis_loss(r, 1.0, 1e-5)), 0.008145336321681256, 1e-15);  // Shannon: no eps
  EXPECT_NEAR(val(tsallis_loss(r, 2.0, 0.0)), 0.007995256698463642, 1e-15);
  const torch::Tensor tokens = torch::tensor({1, 1, 0, 1}).to(torch::kBool);
  EXPECT_NEAR(val(tsallis_loss(r, 1.1, 1e-5, tokens)), 0.008446896453067058, 1e-15);
  const torch::Tensor h = tsallis_entropy_normalized(r.probs, 1.1, 1e-5);
  ASSERT_EQ(h.sizes(), torch::IntArrayRef({4}));
  const double expected_h[] = {0.84468817364781501, 0.86178543034634214, 0.60850935944294937, 0.54316948939327225};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(h[i].item<double>(), expected_h[i], 1e-14);
}

// q = 1 is the Shannon limit: H_norm * log E is the per-token entropy, and q -> 1 is continuous.
TEST(Losses, TsallisShannonLimit) {
  const Routing r = make_routing(example_logits(), example_mask());
  const torch::Tensor h1 = tsallis_entropy_normalized(r.probs, 1.0, 1e-5);
  EXPECT_NEAR(h1.mean().item<double>() * std::log(3.0), val(entropy_loss(r)), 1e-15);
  EXPECT_NEAR((tsallis_entropy_normalized(r.probs, 1.0 + 1e-6, 0.0) - h1).abs().max().item<double>(), 0.0, 1e-6);
  EXPECT_NEAR((tsallis_entropy_normalized(r.probs, 1.0 - 1e-6, 0.0) - h1).abs().max().item<double>(), 0.0, 1e-6);
  // Uniform p: H_norm = 1 for every q (eps = 0).
  const torch::Tensor uniform = torch::full({2, 4}, 0.25, torch::kFloat64);
  for (double q : {0.5, 1.0, 1.1, 2.0, 3.0})
    EXPECT_NEAR((tsallis_entropy_normalized(uniform, q, 0.0) - 1).abs().max().item<double>(), 0.0, 1e-14) << q;
}

TEST(Losses, FloatMatchesDouble) {
  const Routing r = make_routing(example_logits(torch::kFloat32), example_mask());
  for (const torch::Tensor& t : {load_balance_loss(r), z_loss(r), entropy_loss(r), tsallis_loss(r, 1.1, 1e-5)})
    EXPECT_EQ(t.scalar_type(), torch::kFloat32);
  EXPECT_NEAR(val(load_balance_loss(r)), 1.0170882297504646, 1e-6);
  EXPECT_NEAR(val(z_loss(r)), 3.179093673964357, 1e-5);
  EXPECT_NEAR(val(entropy_loss(r)), 0.793366112302469, 1e-6);
  EXPECT_NEAR(val(tsallis_loss(r, 1.1, 1e-5)), 0.008069187888815804, 1e-7);
  const AuxLosses aux = aux_losses(r, LossCoefficients{});
  EXPECT_EQ(aux.total.scalar_type(), torch::kFloat32);
}

// Hand computations.
TEST(Losses, HandComputed) {
  // N = 2, E = 2, top-1 on expert 0 for both tokens: f = {1, 0}, P = {0.7, 0.3} -> 2 * 0.7.
  Routing r;
  r.probs = torch::tensor({0.8, 0.2, 0.6, 0.4}, torch::kFloat64).view({2, 2});
  r.mask = torch::tensor({1, 0, 1, 0}).view({2, 2}).to(torch::kBool);
  r.weights = r.probs * r.mask;
  r.logits = torch::zeros({2, 2}, torch::kFloat64);
  EXPECT_NEAR(val(load_balance_loss(r)), 1.4, 1e-15);
  EXPECT_NEAR(val(z_loss(r)), std::log(2.0) * std::log(2.0), 1e-15);  // logsumexp(0, 0) = log 2
  // -(0.8 log 0.8 + 0.2 log 0.2) and -(0.6 log 0.6 + 0.4 log 0.4), averaged.
  const double h0 = -(0.8 * std::log(0.8) + 0.2 * std::log(0.2)), h1 = -(0.6 * std::log(0.6) + 0.4 * std::log(0.4));
  EXPECT_NEAR(val(entropy_loss(r)), (h0 + h1) / 2, 1e-15);
  // q = 2, eps = 0: H_2 = 1 - sum p^2, H_max = 1 - 1/E = 0.5; mean w = {0.7, 0}, mean p = {0.7, 0.3}.
  const double t0 = (1 - 0.64 - 0.04) / 0.5, t1 = (1 - 0.36 - 0.16) / 0.5;
  EXPECT_NEAR(val(tsallis_loss(r, 2.0, 0.0)), 0.01 * (t0 + t1) / 2 + 0.001 * 2 * (0.7 * 0.7), 1e-15);
  // z_loss of arbitrary logits: (log(e^1 + e^2 + e^3))^2.
  r.logits = torch::tensor({1.0, 2.0, 3.0}, torch::kFloat64).view({1, 3});
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(val(z_loss(r)), lse * lse, 1e-14);
}

// With uniform p the load-balance loss is E * sum_i f_i / E = 1 whatever f; with balanced f it is
// E * sum_i P_i / E = 1 whatever p.
TEST(Losses, LoadBalanceIsOneWhenUniformOrBalanced) {
  const int64_t N = 8, E = 4;
  torch::manual_seed(0);
  torch::Tensor skewed_mask = torch::zeros({N, E}, torch::kBool);
  skewed_mask.select(1, 0).fill_(true);
  skewed_mask.index_put_({0, 2}, true);
  Routing uniform = make_routing(torch::zeros({N, E}, torch::kFloat64), skewed_mask);
  EXPECT_NEAR(val(load_balance_loss(uniform)), 1.0, 1e-15);
  const torch::Tensor balanced_mask = torch::eye(E, torch::kBool).repeat({N / E, 1});  // each expert twice
  Routing balanced = make_routing(torch::randn({N, E}, torch::kFloat64), balanced_mask);
  EXPECT_NEAR(val(load_balance_loss(balanced)), 1.0, 1e-15);
  balanced.probs = torch::full({N, E}, 1.0 / E, torch::kFloat64);
  EXPECT_NEAR(val(load_balance_loss(balanced)), 1.0, 1e-15);
}

TEST(Losses, EntropyIsSafeAtZeroProbability) {
  torch::Tensor p = torch::tensor({1.0, 0.0, 0.0, 0.5, 0.5, 0.0}, torch::kFloat64).view({2, 3}).requires_grad_(true);
  Routing r;
  r.probs = p;
  const torch::Tensor h = entropy_loss(r);
  EXPECT_NEAR(val(h), std::log(2.0) / 2, 1e-15);
  const torch::Tensor g = torch::autograd::grad({h}, {p})[0];
  EXPECT_TRUE(torch::isfinite(g).all().item<bool>());
  // d/dp (-p log p) / N = -(log p + 1) / 2 where p > 0; 0 where p = 0.
  EXPECT_NEAR(g[0][0].item<double>(), -0.5, 1e-15);
  EXPECT_NEAR(g[1][0].item<double>(), -(std::log(0.5) + 1) / 2, 1e-15);
  EXPECT_EQ(g[0][1].item<double>(), 0.0);
  // Uniform p: log E.
  r.probs = torch::full({3, 5}, 0.2, torch::kFloat64);
  EXPECT_NEAR(val(entropy_loss(r)), std::log(5.0), 1e-14);
}

TEST(Losses, OneExpert) {
  const Routing r = make_routing(torch::tensor({0.5, -2.0, 3.0}, torch::kFloat64).view({3, 1}),
                                 torch::ones({3, 1}, torch::kBool));
  EXPECT_NEAR(val(load_balance_loss(r)), 1.0, 1e-15);
  EXPECT_NEAR(val(z_loss(r)), (0.25 + 4.0 + 9.0) / 3, 1e-14);
  EXPECT_EQ(val(entropy_loss(r)), 0.0);
  for (double q : {1.0, 1.1, 2.0}) {
    EXPECT_EQ(tsallis_entropy_normalized(r.probs, q, 1e-5).abs().sum().item<double>(), 0.0);
    EXPECT_NEAR(val(tsallis_loss(r, q, 1e-5)), 0.001, 1e-15);  // 0.01 * 0 + 0.001 * 1 * 1 * 1
  }
}

TEST(Losses, EmptyBatchIsZero) {
  const Routing r = make_routing(torch::zeros({0, 4}, torch::kFloat64), torch::zeros({0, 4}, torch::kBool));
  EXPECT_EQ(val(load_balance_loss(r)), 0.0);
  EXPECT_EQ(val(z_loss(r)), 0.0);
  EXPECT_EQ(val(entropy_loss(r)), 0.0);
  EXPECT_EQ(val(tsallis_loss(r, 1.1, 1e-5)), 0.0);
  // A batch whose tokens are all padding.
  const Routing full = make_routing(example_logits(), example_mask());
  EXPECT_EQ(val(tsallis_loss(full, 1.1, 1e-5, torch::zeros({4}, torch::kBool))), 0.0);
  // No assignment at all (everything dropped): f = 0.
  const Routing dropped = make_routing(example_logits(), torch::zeros({4, 3}, torch::kBool));
  EXPECT_EQ(val(load_balance_loss(dropped)), 0.0);
}

TEST(Losses, GradientsMatchCentralDifferences) {
  const torch::Tensor z0 = example_logits();
  const torch::Tensor mask = example_mask();
  const torch::Tensor tokens = torch::tensor({1, 0, 1, 1}).to(torch::kBool);
  const double tol = 1e-8;
  EXPECT_LT(gradcheck_error([&](const torch::Tensor& z) { return load_balance_loss(make_routing(z, mask)); }, z0), tol);
  EXPECT_LT(gradcheck_error([&](const torch::Tensor& z) { return z_loss(make_routing(z, mask)); }, z0), tol);
  EXPECT_LT(gradcheck_error([&](const torch::Tensor& z) { return entropy_loss(make_routing(z, mask)); }, z0), tol);
  for (double q : {1.0, 1.1, 2.0}) {
    EXPECT_LT(gradcheck_error([&](const torch::Tensor& z) { return tsallis_loss(make_routing(z, mask), q, 1e-5); }, z0),
              tol)
        << "q = " << q;
    EXPECT_LT(gradcheck_error(
                  [&](const torch::Tensor& z) { return tsallis_loss(make_routing(z, mask), q, 1e-5, tokens); }, z0),
              tol)
        << "q = " << q << " with token_mask";
  }
  LossCoefficients all;
  all.entropy = 1e-4;
  all.tsallis = 1.0;
  EXPECT_LT(gradcheck_error([&](const torch::Tensor& z) { return aux_losses(make_routing(z, mask), all).total; }, z0),
            tol);
}

// Padding tokens do not enter the tsallis loss, whatever their values (even NaN).
TEST(Losses, TsallisTokenMaskIgnoresPadding) {
  const torch::Tensor tokens = torch::tensor({1, 1, 0, 1}).to(torch::kBool);
  Routing r = make_routing(example_logits(), example_mask());
  r.probs = r.probs.clone();
  r.probs[2].fill_(std::nan(""));
  EXPECT_NEAR(val(tsallis_loss(r, 1.1, 1e-5, tokens)), 0.008446896453067058, 1e-15);
  EXPECT_THROW(tsallis_loss(r, 1.1, 1e-5, torch::ones({3}, torch::kBool)), dynamoe::Error);
  EXPECT_THROW(tsallis_loss(r, 1.1, 1e-5, torch::ones({4}, torch::kInt64)), dynamoe::Error);
  EXPECT_THROW(tsallis_loss(r, 1.1, -1.0), dynamoe::ConfigError);
}

TEST(Losses, AuxLossesCoefficients) {
  const Routing r = make_routing(example_logits(), example_mask());
  const double lb = 1.0170882297504646, zl = 3.179093673964357;

  const AuxLosses defaults = aux_losses(r, LossCoefficients{});
  EXPECT_EQ(defaults.values.size(), 2u);
  EXPECT_NEAR(defaults.values.at("load_balance"), lb, 1e-14);
  EXPECT_NEAR(defaults.values.at("z_loss"), zl, 1e-14);
  EXPECT_EQ(defaults.values.count("entropy"), 0u);
  EXPECT_EQ(defaults.values.count("tsallis"), 0u);
  EXPECT_NEAR(val(defaults.total), 1e-2 * lb + 1e-3 * zl, 1e-15);

  LossCoefficients all;
  all.entropy = 1e-4;
  all.tsallis = 2.0;
  const AuxLosses every = aux_losses(r, all);
  EXPECT_EQ(every.values.size(), 4u);
  EXPECT_NEAR(every.values.at("entropy"), 0.793366112302469, 1e-14);
  EXPECT_NEAR(every.values.at("tsallis"), 0.008069187888815804, 1e-15);  // unweighted
  EXPECT_NEAR(val(every.total), 0.029567688360330857, 1e-15);

  LossCoefficients no_lb;
  no_lb.load_balance = 0;
  const AuxLosses some = aux_losses(r, no_lb);
  EXPECT_EQ(some.values.count("load_balance"), 0u);
  EXPECT_NEAR(val(some.total), 1e-3 * zl, 1e-15);

  LossCoefficients none;
  none.load_balance = 0;
  none.z_loss = 0;
  const AuxLosses off = aux_losses(r, none);
  EXPECT_TRUE(off.values.empty());
  EXPECT_EQ(val(off.total), 0.0);
  EXPECT_EQ(off.total.scalar_type(), torch::kFloat64);

  // The tsallis token mask is passed through.
  LossCoefficients ts;
  ts.load_balance = 0;
  ts.z_loss = 0;
  ts.tsallis = 1.0;
  EXPECT_NEAR(aux_losses(r, ts, torch::tensor({1, 1, 0, 1}).to(torch::kBool)).values.at("tsallis"),
              0.008446896453067058, 1e-15);
}
