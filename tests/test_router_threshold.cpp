// threshold router: hand-computed sets, the argmax fallback, normalisation, a naive loop,
// selection bias, and gradient checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "dynamoe/moe/routers/threshold.h"
#include "dynamoe/moe/routing.h"
#include "gradcheck.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::ThresholdOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::threshold_route;

at::Tensor table(const std::vector<double>& v, int64_t n, int64_t e) { return at::tensor(v, at::kDouble).view({n, e}); }
at::Tensor bools(const std::vector<int>& v, int64_t n, int64_t e) {
  return at::tensor(v, at::kInt).view({n, e}).to(at::kBool);
}

TEST(ThresholdRouter, HandComputedSetsAndTheArgmaxFallback) {
  at::Tensor z = table({0.05, 0.5, 0.15, 0.3,  //
                        0.3, 0.25, 0.25, 0.2},
                       2, 4)
                     .log();
  RouterOptions opt;  // theta = 0.1
  Routing r = threshold_route(z, opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 1, 1, 1, 1, 1, 1}, 2, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.5, 0.15, 0.3, 0.3, 0.25, 0.25, 0.2}, 2, 4))) << r.weights;

  opt.theta = 0.28;
  r = threshold_route(z, opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 0, 1, 1, 0, 0, 0}, 2, 4))) << r.mask;

  opt.theta = 0.6;  // nobody reaches it: argmax only
  r = threshold_route(z, opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 0, 0, 1, 0, 0, 0}, 2, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.5, 0, 0, 0.3, 0, 0, 0}, 2, 4))) << r.weights;

  opt.theta = 0.28;
  opt.normalize = true;
  r = threshold_route(z, opt, RouterContext{});
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.5 / 0.8, 0, 0.3 / 0.8, 1, 0, 0, 0}, 2, 4))) << r.weights;
}

TEST(ThresholdRouter, MatchesANaivePerTokenLoop) {
  at::manual_seed(4);
  const int64_t n = 80, e = 5;
  at::Tensor z = at::randn({n, e}, at::kDouble);
  RouterOptions opt;
  opt.theta = 0.4;
  opt.temperature = 0.8;
  Routing r = threshold_route(z, opt, RouterContext{});
  at::Tensor p = at::softmax(z / 0.8, -1);
  int64_t fallbacks = 0;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<bool> expected(e);
    bool any = false;
    int64_t best = 0;
    for (int64_t i = 0; i < e; ++i) {
      expected[i] = p[t][i].item<double>() >= 0.4;
      any = any || expected[i];
      if (p[t][i].item<double>() > p[t][best].item<double>()) best = i;
    }
    if (!any) {
      expected[best] = true;
      ++fallbacks;
    }
    for (int64_t i = 0; i < e; ++i) EXPECT_EQ(r.mask[t][i].item<bool>(), expected[i]) << t << " " << i;
  }
  EXPECT_GT(fallbacks, 0);  // the example exercises both branches
  EXPECT_LT(fallbacks, n);
}

TEST(ThresholdRouter, SelectionBiasChangesTheSetButNotTheWeights) {
  at::Tensor z = table({0.05, 0.5, 0.15, 0.3}, 1, 4).log();
  RouterContext ctx;
  ctx.selection_bias = at::tensor({2.0, -2.0, 0.0, 0.0}, at::kDouble);
  Routing r = threshold_route(z, RouterOptions{}, ctx);
  // biased probabilities: proportional to .05 e^2, .5 e^-2, .15, .3 = .369, .068, .15, .3 (sum .937),
  // normalised .394, .072, .160, .320 -> theta .1 keeps experts 0, 2, 3
  EXPECT_TRUE(r.mask.equal(bools({1, 0, 1, 1}, 1, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0.05, 0, 0.15, 0.3}, 1, 4))) << r.weights;
}

TEST(ThresholdRouter, GradientsMatchCentralDifferences) {
  at::Tensor z = table({0.05, 0.5, 0.15, 0.3,  //
                        0.02, 0.04, 0.9, 0.04,  //
                        0.3, 0.26, 0.24, 0.2},
                       3, 4)
                     .log();
  for (bool normalize : {false, true}) {
    RouterOptions opt;
    opt.theta = 0.12;
    opt.normalize = normalize;
    auto fn = [&](const std::vector<at::Tensor>& in) { return threshold_route(in[0], opt, RouterContext{}).weights; };
    auto gc = dynamoe::testutil::gradcheck(fn, {z});
    EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << gc.summary();
    EXPECT_EQ(gc.checked, 12);
  }
  // the argmax fallback is differentiable too
  RouterOptions opt;
  opt.theta = 0.95;
  auto fn = [&](const std::vector<at::Tensor>& in) { return threshold_route(in[0], opt, RouterContext{}).weights; };
  auto gc = dynamoe::testutil::gradcheck(fn, {z});
  EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << gc.summary();
}

}  // namespace
