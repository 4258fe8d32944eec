// top_p router: the crossing expert, min_k/max_k/k_max clamps, normalisation, a naive
// per-token loop, selection bias, and gradient checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "dynamoe/moe/routers/top_p.h"
#include "dynamoe/moe/routing.h"
#include "gradcheck.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::TopPOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::top_p_route;

at::Tensor table(const std::vector<double>& v, int64_t n, int64_t e) { return at::tensor(v, at::kDouble).view({n, e}); }
at::Tensor bools(const std::vector<int>& v, int64_t n, int64_t e) {
  return at::tensor(v, at::kInt).view({n, e}).to(at::kBool);
}

// p = [0.1, 0.4, 0.2, 0.3]: sorted 0.4 (e1), 0.3 (e3), 0.2 (e2), 0.1 (e0); cumsum .4 .7 .9 1.
const std::vector<double> kP = {0.1, 0.4, 0.2, 0.3};

Routing run(double top_p, RouterOptions opt = RouterOptions{}, RouterContext ctx = RouterContext{}) {
  opt.p = top_p;
  return top_p_route(table(kP, 1, 4).log(), opt, ctx);
}

TEST(TopPRouter, IncludesTheExpertThatCrossesP) {
  EXPECT_TRUE(run(0.3).mask.equal(bools({0, 1, 0, 0}, 1, 4)));   // .4 >= .3
  EXPECT_TRUE(run(0.5).mask.equal(bools({0, 1, 0, 1}, 1, 4)));   // .4 < .5, .7 >= .5
  EXPECT_TRUE(run(0.75).mask.equal(bools({0, 1, 1, 1}, 1, 4)));  // .7 < .75, .9 >= .75
  EXPECT_TRUE(run(0.95).mask.equal(bools({1, 1, 1, 1}, 1, 4)));
  EXPECT_TRUE(run(2.0).mask.equal(bools({1, 1, 1, 1}, 1, 4)));   // never reached: all experts
  Routing r = run(0.5);
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.4, 0, 0.3}, 1, 4))) << r.weights;  // raw p by default
  EXPECT_EQ(r.assignments_before_capacity, 2);
}

TEST(TopPRouter, NormalizeOption) {
  RouterOptions opt;
  opt.normalize = true;
  Routing r = run(0.75, opt);
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.4 / 0.9, 0.2 / 0.9, 0.3 / 0.9}, 1, 4))) << r.weights;
}

TEST(TopPRouter, ClampsTheSetSizeKeepingTheLargest) {
  RouterOptions opt;
  opt.min_k = 2;
  EXPECT_TRUE(run(0.3, opt).mask.equal(bools({0, 1, 0, 1}, 1, 4)));
  opt = RouterOptions{};
  opt.max_k = 1;
  EXPECT_TRUE(run(0.75, opt).mask.equal(bools({0, 1, 0, 0}, 1, 4)));
  RouterContext ctx;
  ctx.k_max = 2;
  EXPECT_TRUE(run(0.95, RouterOptions{}, ctx).mask.equal(bools({0, 1, 0, 1}, 1, 4)));
  opt = RouterOptions{};
  opt.max_k = 3;
  ctx.k_max = 5;  // the smaller cap wins
  EXPECT_TRUE(run(0.95, opt, ctx).mask.equal(bools({0, 1, 1, 1}, 1, 4)));
  opt.min_k = 4;  // min above max: max wins
  opt.max_k = 2;
  EXPECT_TRUE(run(0.3, opt).mask.equal(bools({0, 1, 0, 1}, 1, 4)));
}

TEST(TopPRouter, MatchesANaivePerTokenLoop) {
  at::manual_seed(2);
  const int64_t n = 60, e = 6;
  at::Tensor z = at::randn({n, e}, at::kDouble) * 1.5;
  for (double top_p : {0.2, 0.4, 0.6, 0.9}) {
    RouterOptions opt;
    opt.p = top_p;
    opt.temperature = 1.3;
    Routing r = top_p_route(z, opt, RouterContext{});
    at::Tensor p = at::softmax(z / 1.3, -1);
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int64_t> idx(e);
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return p[t][a].item<double>() > p[t][b].item<double>(); });
      double cum = 0;
      std::vector<bool> expected(e, false);
      for (int64_t j = 0; j < e; ++j) {
        expected[idx[j]] = true;
        cum += p[t][idx[j]].item<double>();
        if (cum >= top_p) break;
      }
      for (int64_t i = 0; i < e; ++i) {
        EXPECT_EQ(r.mask[t][i].item<bool>(), expected[i]) << "token " << t << " expert " << i << " p " << top_p;
        EXPECT_DOUBLE_EQ(r.weights[t][i].item<double>(), expected[i] ? p[t][i].item<double>() : 0.0);
      }
    }
  }
}

TEST(TopPRouter, SelectionBiasChangesTheSetButNotTheWeights) {
  RouterContext ctx;
  ctx.selection_bias = at::tensor({3.0, 0.0, 0.0, 0.0}, at::kDouble);  // expert 0 now dominates selection
  Routing r = run(0.5, RouterOptions{}, ctx);
  EXPECT_TRUE(r.mask.equal(bools({1, 0, 0, 0}, 1, 4))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0.1, 0, 0, 0}, 1, 4))) << r.weights;  // unbiased p
}

TEST(TopPRouter, GradientsMatchCentralDifferences) {
  // Rows whose cumulative sums stay well away from top_p.
  at::Tensor z = table({0.1, 0.4, 0.2, 0.3,  //
                        0.6, 0.1, 0.2, 0.1,  //
                        0.22, 0.18, 0.4, 0.2},
                       3, 4)
                     .log();
  for (bool normalize : {false, true}) {
    RouterOptions opt;
    opt.p = 0.55;
    opt.normalize = normalize;
    auto fn = [&](const std::vector<at::Tensor>& in) { return top_p_route(in[0], opt, RouterContext{}).weights; };
    auto gc = dynamoe::testutil::gradcheck(fn, {z});
    EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << gc.summary();
    EXPECT_EQ(gc.checked, 12);
  }
}

}  // namespace
