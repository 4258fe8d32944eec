// tsallis_hybrid router (DynMoLE): the literal top-p rule (crossing expert excluded), the
// keep_top_k floor, the entropy broadcast and when it is skipped, H_norm against the direct
// formula, unnormalised weights, and gradient checks of the weights and of H_norm.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "dynamoe/moe/routers/tsallis_hybrid.h"
#include "dynamoe/moe/routing.h"
#include "gradcheck.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::TsallisHybridOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::tsallis_hybrid_route;

at::Tensor table(const std::vector<double>& v, int64_t n, int64_t e) { return at::tensor(v, at::kDouble).view({n, e}); }
at::Tensor bools(const std::vector<int>& v, int64_t n, int64_t e) {
  return at::tensor(v, at::kInt).view({n, e}).to(at::kBool);
}

// Three tokens: H_norm (q = 1.1) is .495, .666 and .992.
const std::vector<double> kP = {0.05, 0.8, 0.1, 0.05,  //
                                0.7, 0.1, 0.1, 0.1,    //
                                0.3, 0.26, 0.24, 0.2};

Routing run(RouterOptions opt = RouterOptions{}) { return tsallis_hybrid_route(table(kP, 3, 4).log(), opt, RouterContext{}); }

TEST(TsallisHybridRouter, HandComputedDefaults) {
  Routing r = run();  // top_p .75, keep_top_k 2, q 1.1, threshold .9
  // token 0: cumsum .8 .9 .95 1 -> nothing <= .75; keep the top 2 -> {1, 2}
  // token 1: cumsum .7 .8 .9 1 -> {0}; keep the top 2 (tie at .1: lower index) -> {0, 1}
  // token 2: H_norm .992 > .9 -> all experts
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1}, 3, 4))) << r.mask;
  // w = p * mask, not renormalised
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.8, 0.1, 0, 0.7, 0.1, 0, 0, 0.3, 0.26, 0.24, 0.2}, 3, 4)))
      << r.weights;
  ASSERT_TRUE(r.h_norm.defined());
  EXPECT_EQ(r.h_norm.sizes(), at::IntArrayRef({3}));
  EXPECT_TRUE(at::allclose(r.h_norm, at::tensor({0.494955546903896, 0.6658347664623576, 0.9919680701994124}, at::kDouble)))
      << r.h_norm;
}

TEST(TsallisHybridRouter, TheExpertCrossingTopPIsNotIncluded) {
  RouterOptions opt;
  opt.keep_top_k = 1;
  opt.p = 0.85;  // token 0: .8 <= .85 < .9 -> {1} only (the top_p router would add expert 2)
  Routing r = run(opt);
  EXPECT_TRUE(r.mask[0].equal(bools({0, 1, 0, 0}, 1, 4)[0])) << r.mask;
  opt.p = 0.92;  // .9 <= .92 -> {1, 2}
  r = run(opt);
  EXPECT_TRUE(r.mask[0].equal(bools({0, 1, 1, 0}, 1, 4)[0])) << r.mask;
  opt.keep_top_k = 3;
  opt.p = 0.5;  // the floor alone: the 3 largest (tie .05/.05 -> lower index)
  r = run(opt);
  EXPECT_TRUE(r.mask[0].equal(bools({1, 1, 1, 0}, 1, 4)[0])) << r.mask;
}

TEST(TsallisHybridRouter, BroadcastIsSkippedForThresholdOneOrQAtMostZero) {
  RouterOptions opt;
  opt.threshold = 1.0;
  EXPECT_TRUE(run(opt).mask[2].equal(bools({1, 1, 0, 0}, 1, 4)[0]));  // cumsum .3 .56 .8: {0, 1}
  opt = RouterOptions{};
  opt.q = 0.0;  // H_norm = 1 for every token, but no broadcast
  Routing r = run(opt);
  EXPECT_TRUE(at::allclose(r.h_norm, at::ones({3}, at::kDouble)));
  EXPECT_TRUE(r.mask.equal(bools({0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0}, 3, 4))) << r.mask;
  opt = RouterOptions{};
  opt.threshold = 0.6;  // tokens 1 and 2 now broadcast
  EXPECT_TRUE(run(opt).mask.equal(bools({0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1}, 3, 4)));
}

// H_norm written out, in double, for one row of probabilities.
double direct_h_norm(const std::vector<double>& p, double q, double eps) {
  const double e = static_cast<double>(p.size());
  if (q == 1.0) {
    double h = 0;
    for (double v : p) h -= v * std::log(v);
    return h / std::log(e);
  }
  double s = 0;
  for (double v : p) s += std::pow(v + eps, q);
  return ((1 - s) / (q - 1)) / ((1 - std::pow(e, 1 - q)) / (q - 1));
}

TEST(TsallisHybridRouter, HNormMatchesTheDirectFormula) {
  at::manual_seed(12);
  const int64_t n = 20;
  for (int64_t e : {2, 3, 8}) {
    at::Tensor z = at::randn({n, e}, at::kDouble) * 2;
    for (double q : {1.1, 1.0, 2.0, 0.5}) {
      RouterOptions opt;
      opt.q = q;
      Routing r = tsallis_hybrid_route(z, opt, RouterContext{});
      for (int64_t t = 0; t < n; ++t) {
        std::vector<double> p(e);
        for (int64_t i = 0; i < e; ++i) p[i] = r.probs[t][i].item<double>();
        EXPECT_NEAR(r.h_norm[t].item<double>(), direct_h_norm(p, q, opt.eps), 1e-12) << "q " << q;
        const bool broadcast = r.h_norm[t].item<double>() > opt.threshold;
        if (broadcast) {
          EXPECT_TRUE(r.mask[t].all().item<bool>());
        }
      }
    }
  }
  // uniform probabilities: Shannon H_norm is exactly 1
  RouterOptions opt;
  opt.q = 1.0;
  EXPECT_NEAR(tsallis_hybrid_route(at::zeros({1, 6}, at::kDouble), opt, RouterContext{}).h_norm.item<double>(), 1.0, 1e-12);
  // one expert: H_norm = 0, that expert active with weight 1
  Routing one = tsallis_hybrid_route(at::zeros({2, 1}, at::kFloat), RouterOptions{}, RouterContext{});
  EXPECT_TRUE(one.h_norm.equal(at::zeros({2}, at::kFloat)));
  EXPECT_TRUE(one.weights.equal(at::ones({2, 1}, at::kFloat)));
}

TEST(TsallisHybridRouter, SelectionBiasChangesTheSetButNotTheWeights) {
  RouterContext ctx;
  ctx.selection_bias = at::tensor({3.0, 0.0, 0.0, 0.0}, at::kDouble);
  // token 0 biased: .05 e^3 = 1.004, .8, .1, .05 -> expert 0 is now first, then expert 1
  Routing r = tsallis_hybrid_route(table(kP, 3, 4).log(), RouterOptions{}, ctx);
  EXPECT_TRUE(r.mask[0].equal(bools({1, 1, 0, 0}, 1, 4)[0])) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights[0], at::tensor({0.05, 0.8, 0.0, 0.0}, at::kDouble))) << r.weights;
  EXPECT_NEAR(r.h_norm[0].item<double>(), 0.494955546903896, 1e-12);  // entropy of the unbiased p
}

TEST(TsallisHybridRouter, GradientsOfWeightsAndHNormMatchCentralDifferences) {
  // No ties, cumulative sums and H_norm away from top_p and the threshold.
  at::Tensor z = table({0.1, 0.45, 0.25, 0.2,  //
                        0.6, 0.05, 0.15, 0.2,  //
                        0.3, 0.26, 0.24, 0.2},
                       3, 4)
                     .log();
  for (double q : {1.1, 1.0, 2.0}) {
    RouterOptions opt;
    opt.q = q;
    auto fn = [&](const std::vector<at::Tensor>& in) {
      Routing r = tsallis_hybrid_route(in[0], opt, RouterContext{});
      return at::cat({r.weights.flatten(), r.h_norm});
    };
    auto gc = dynamoe::testutil::gradcheck(fn, {z});
    EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << "q " << q << ": " << gc.summary();
    EXPECT_EQ(gc.checked, 12);
  }
}

}  // namespace
