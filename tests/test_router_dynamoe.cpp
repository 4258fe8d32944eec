// dynamoe router: hand-computed quantile thresholds, the argmax fallback, the k_max cap, the
// quantile against torch::quantile and a naive order-statistic interpolation, the training
// noise, selection bias, and gradient checks in evaluation and training.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "dynamoe/moe/routers/dynamoe.h"
#include "dynamoe/moe/routing.h"
#include "gradcheck.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::DynamoeOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::dynamoe_route;

at::Tensor table(const std::vector<double>& v, int64_t n, int64_t e) { return at::tensor(v, at::kDouble).view({n, e}); }
at::Tensor bools(const std::vector<int>& v, int64_t n, int64_t e) {
  return at::tensor(v, at::kInt).view({n, e}).to(at::kBool);
}
// Logits whose g = softmax(z / 0.5) is the given table.
at::Tensor logits_for_g(const std::vector<double>& g, int64_t n, int64_t e) { return table(g, n, e).log() * 0.5; }

// exp(a) / (exp(a) + exp(b))
double soft2(double a, double b) { return std::exp(a) / (std::exp(a) + std::exp(b)); }

TEST(DynamoeRouter, HandComputedMedianThreshold) {
  // g = .1 .4 .2 .3: median of .1 .2 .3 .4 is .25 -> S = {1, 3}; w = softmax(.4, .3)
  Routing r = dynamoe_route(logits_for_g({0.1, 0.4, 0.2, 0.3}, 1, 4), RouterOptions{}, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 0, 1}, 1, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0, soft2(0.4, 0.3), 0, soft2(0.3, 0.4)}, 1, 4))) << r.weights;
  EXPECT_TRUE(at::allclose(r.probs, table({0.1, 0.4, 0.2, 0.3}, 1, 4)));

  // odd E: the median IS an order statistic and g_i > t excludes it -> S = {3, 4}
  r = dynamoe_route(logits_for_g({0.1, 0.15, 0.2, 0.25, 0.3}, 1, 5), RouterOptions{}, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({0, 0, 0, 1, 1}, 1, 5))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0, 0, soft2(0.25, 0.3), soft2(0.3, 0.25)}, 1, 5))) << r.weights;

  // tau = .25: position .75 between .1 and .2 -> t = .175 -> S = {1, 2, 3}
  RouterOptions opt;
  opt.tau = 0.25;
  r = dynamoe_route(logits_for_g({0.1, 0.4, 0.2, 0.3}, 1, 4), opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 1, 1}, 1, 4))) << r.mask;
  const double den = std::exp(0.4) + std::exp(0.2) + std::exp(0.3);
  EXPECT_TRUE(at::allclose(r.weights, table({0, std::exp(0.4) / den, std::exp(0.2) / den, std::exp(0.3) / den}, 1, 4)));
}

TEST(DynamoeRouter, EmptySetFallsBackToArgmaxAndKMaxKeepsTheLargest) {
  Routing r = dynamoe_route(at::zeros({2, 4}, at::kFloat), RouterOptions{}, RouterContext{});  // all g equal
  EXPECT_TRUE(r.mask.equal(bools({1, 0, 0, 0, 1, 0, 0, 0}, 2, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, r.mask.to(at::kFloat)));

  RouterOptions opt;
  opt.tau = 0.0;  // t = min g: every expert but the smallest
  RouterContext ctx;
  ctx.k_max = 2;
  r = dynamoe_route(logits_for_g({0.1, 0.4, 0.2, 0.3}, 1, 4), opt, ctx);
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 0, 1}, 1, 4))) << r.mask;
  ctx.k_max = 1;
  r = dynamoe_route(logits_for_g({0.1, 0.4, 0.2, 0.3}, 1, 4), opt, ctx);
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 0, 0}, 1, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0, 1, 0, 0}, 1, 4)));
}

// The linear quantile of a row, as numpy/torch define it, written out.
double naive_quantile(std::vector<double> v, double tau) {
  std::sort(v.begin(), v.end());
  const double pos = tau * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

TEST(DynamoeRouter, ThresholdIsTheTorchQuantileOfEachRow) {
  at::manual_seed(8);
  const int64_t n = 40;
  for (int64_t e : {2, 5, 8}) {
    for (double tau : {0.1, 0.3, 0.5, 0.75, 0.9}) {
      at::Tensor z = at::randn({n, e}, at::kDouble);
      RouterOptions opt;
      opt.tau = tau;
      Routing r = dynamoe_route(z, opt, RouterContext{});
      at::Tensor q = at::quantile(r.probs, tau, /*dim=*/-1, /*keepdim=*/true);  // [N, 1]
      at::Tensor above = r.probs > q;
      for (int64_t t = 0; t < n; ++t) {
        std::vector<double> row(e);
        for (int64_t i = 0; i < e; ++i) row[i] = r.probs[t][i].item<double>();
        EXPECT_NEAR(naive_quantile(row, tau), q[t][0].item<double>(), 1e-15);
        if (above[t].any().item<bool>()) {
          EXPECT_TRUE(r.mask[t].equal(above[t])) << "token " << t << " tau " << tau;
        } else {
          EXPECT_EQ(r.mask[t].sum().item<int64_t>(), 1);
          EXPECT_TRUE(r.mask[t][r.probs[t].argmax().item<int64_t>()].item<bool>());
        }
      }
    }
  }
}

TEST(DynamoeRouter, TrainingAddsSeededGaussianNoiseAndEvaluationDoesNot) {
  const int64_t n = 4000, e = 8;
  at::manual_seed(9);
  at::Tensor z = at::randn({n, e}, at::kDouble);
  at::Tensor clean = at::softmax(z / 0.5, -1);
  RouterContext ctx;
  Routing eval = dynamoe_route(z, RouterOptions{}, ctx);
  EXPECT_TRUE(eval.probs.equal(clean));

  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(123);
  Routing a = dynamoe_route(z, RouterOptions{}, ctx);
  at::Tensor noise = a.probs - clean;
  EXPECT_NEAR(noise.mean().item<double>(), 0.0, 0.005);
  EXPECT_NEAR(noise.std().item<double>(), 0.1, 0.005);  // sigma

  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(123);
  Routing b = dynamoe_route(z, RouterOptions{}, ctx);
  EXPECT_TRUE(b.probs.equal(a.probs));
  EXPECT_TRUE(b.mask.equal(a.mask));
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(124);
  Routing c = dynamoe_route(z, RouterOptions{}, ctx);
  EXPECT_FALSE(c.mask.equal(a.mask));

  RouterOptions quiet;
  quiet.sigma = 0.0;
  EXPECT_TRUE(dynamoe_route(z, quiet, ctx).probs.equal(clean));
}

TEST(DynamoeRouter, SelectionBiasChangesTheSetButNotTheWeightFormula) {
  at::Tensor z = logits_for_g({0.1, 0.4, 0.2, 0.3}, 1, 4);
  RouterContext ctx;
  ctx.selection_bias = at::tensor({1.0, 0.0, 0.0, -1.0}, at::kDouble);
  // biased g = softmax((z + b) / .5) is proportional to g e^(2b): .739, .4, .2, .041, normalised
  // .536, .290, .145, .029; median (.145 + .290) / 2 = .217 -> S = {0, 1}
  Routing r = dynamoe_route(z, RouterOptions{}, ctx);
  EXPECT_TRUE(r.mask.equal(bools({1, 1, 0, 0}, 1, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({soft2(0.1, 0.4), soft2(0.4, 0.1), 0, 0}, 1, 4))) << r.weights;
  EXPECT_TRUE(at::allclose(r.probs, table({0.1, 0.4, 0.2, 0.3}, 1, 4)));  // unbiased g
}

TEST(DynamoeRouter, GradientsMatchCentralDifferencesInEvaluationAndTraining) {
  at::manual_seed(10);
  at::Tensor z = at::randn({5, 6}, at::kDouble);
  for (bool training : {false, true}) {
    for (int64_t k_max : {0, 2}) {
      RouterContext ctx;
      ctx.training = training;
      ctx.k_max = k_max;
      auto fn = [&](const std::vector<at::Tensor>& in) {
        RouterContext c = ctx;
        c.generator = at::make_generator<at::CPUGeneratorImpl>(77);  // the same noise at every evaluation
        return dynamoe_route(in[0], RouterOptions{}, c).weights;
      };
      auto gc = dynamoe::testutil::gradcheck(fn, {z});
      EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << "training " << training << " k_max " << k_max << ": " << gc.summary();
      EXPECT_EQ(gc.checked, 30);
    }
  }
}

}  // namespace
