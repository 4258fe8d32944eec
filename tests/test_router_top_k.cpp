// top_k router: hand-computed examples, sets against a naive per-token loop, temperature,
// selection bias, and gradient checks of both weight modes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "dynamoe/moe/routers/top_k.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/util/error.h"
#include "gradcheck.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::TopKOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::top_k_route;

// Logits whose softmax is the given probability table [N, E].
at::Tensor logits_of(const std::vector<double>& p, int64_t n, int64_t e) {
  return at::tensor(p, at::kDouble).view({n, e}).log();
}

at::Tensor table(const std::vector<double>& v, int64_t n, int64_t e) { return at::tensor(v, at::kDouble).view({n, e}); }
at::Tensor bools(const std::vector<int>& v, int64_t n, int64_t e) {
  return at::tensor(v, at::kInt).view({n, e}).to(at::kBool);
}

TEST(TopKRouter, HandComputedNormalizedAndRaw) {
  at::Tensor z = logits_of({0.1, 0.4, 0.2, 0.3,  //
                            0.25, 0.05, 0.6, 0.1},
                           2, 4);
  RouterOptions opt;
  opt.k = 2;
  Routing r = top_k_route(z, opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(table({0, 1, 0, 1, 1, 0, 1, 0}, 2, 4).to(at::kBool))) << r.mask;
  EXPECT_TRUE(at::allclose(r.weights, table({0, 4.0 / 7, 0, 3.0 / 7, 0.25 / 0.85, 0, 0.6 / 0.85, 0}, 2, 4)))
      << r.weights;
  EXPECT_TRUE(at::allclose(r.probs, z.exp()));
  EXPECT_TRUE(r.logits.equal(z));
  EXPECT_EQ(r.assignments_before_capacity, 4);

  opt.normalize = false;
  r = top_k_route(z, opt, RouterContext{});
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.4, 0, 0.3, 0.25, 0, 0.6, 0}, 2, 4))) << r.weights;

  opt.k = 1;
  r = top_k_route(z, opt, RouterContext{});
  EXPECT_TRUE(at::allclose(r.weights, table({0, 0.4, 0, 0, 0, 0, 0.6, 0}, 2, 4))) << r.weights;
}

TEST(TopKRouter, SetsMatchANaivePerTokenLoop) {
  at::manual_seed(1);
  const int64_t n = 50, e = 7;
  at::Tensor z = at::randn({n, e}, at::kDouble);
  for (int64_t k : {1, 2, 3, 7}) {
    RouterOptions opt;
    opt.k = k;
    Routing r = top_k_route(z, opt, RouterContext{});
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int64_t> idx(e);
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return z[t][a].item<double>() > z[t][b].item<double>(); });
      std::set<int64_t> expected(idx.begin(), idx.begin() + k), got;
      double mass = 0;
      for (int64_t i : expected) mass += r.probs[t][i].item<double>();
      for (int64_t i = 0; i < e; ++i) {
        if (r.mask[t][i].item<bool>()) {
          got.insert(i);
          EXPECT_NEAR(r.weights[t][i].item<double>(), r.probs[t][i].item<double>() / mass, 1e-12);
        }
      }
      EXPECT_EQ(got, expected) << "token " << t << " k " << k;
    }
  }
}

TEST(TopKRouter, KIsClampedToTheNumberOfExpertsAndTiesGoToLowerIndex) {
  RouterOptions opt;
  opt.k = 5;
  Routing r = top_k_route(at::zeros({3, 3}, at::kFloat), opt, RouterContext{});
  EXPECT_TRUE(r.mask.all().item<bool>());
  EXPECT_TRUE(at::allclose(r.weights, at::full({3, 3}, 1.0 / 3, at::kFloat)));
  opt.k = 2;
  r = top_k_route(at::zeros({1, 4}, at::kFloat), opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({1, 1, 0, 0}, 1, 4)));
}

TEST(TopKRouter, TemperatureScalesTheProbabilities) {
  at::Tensor z = table({2.0, 0.0, -1.0}, 1, 3);
  RouterOptions opt;
  opt.k = 1;
  opt.temperature = 2.0;
  opt.normalize = false;
  Routing r = top_k_route(z, opt, RouterContext{});
  const double denom = std::exp(1.0) + 1.0 + std::exp(-0.5);
  EXPECT_NEAR(r.weights[0][0].item<double>(), std::exp(1.0) / denom, 1e-12);
  EXPECT_TRUE(at::allclose(r.probs, at::softmax(z / 2.0, -1)));
}

TEST(TopKRouter, SelectionBiasChangesTheSetButNotTheWeightFormula) {
  at::Tensor z = logits_of({0.1, 0.4, 0.2, 0.3}, 1, 4);
  RouterOptions opt;
  opt.k = 2;
  RouterContext ctx;
  ctx.selection_bias = at::tensor({2.0, 0.0, 0.0, 0.0}, at::kDouble);  // pushes expert 0 to the top
  Routing r = top_k_route(z, opt, ctx);
  EXPECT_TRUE(r.mask.equal(bools({1, 1, 0, 0}, 1, 4)));
  // weights from the UNBIASED p: 0.1 and 0.4, normalised over the set
  EXPECT_TRUE(at::allclose(r.weights, table({0.2, 0.8, 0, 0}, 1, 4))) << r.weights;
  EXPECT_TRUE(at::allclose(r.probs, z.exp()));
  opt.normalize = false;
  r = top_k_route(z, opt, ctx);
  EXPECT_TRUE(at::allclose(r.weights, table({0.1, 0.4, 0, 0}, 1, 4))) << r.weights;
  ctx.selection_bias = at::zeros({3}, at::kDouble);
  EXPECT_THROW(top_k_route(z, opt, ctx), dynamoe::Error);
}

TEST(TopKRouter, GradientsMatchCentralDifferences) {
  at::manual_seed(5);
  at::Tensor z = at::randn({6, 5}, at::kDouble) * 2;  // random: ties and near-ties have probability ~0
  for (bool normalize : {true, false}) {
    for (int64_t k : {1, 2, 4}) {
      RouterOptions opt;
      opt.k = k;
      opt.normalize = normalize;
      opt.temperature = 0.7;
      auto fn = [&](const std::vector<at::Tensor>& in) { return top_k_route(in[0], opt, RouterContext{}).weights; };
      auto gc = dynamoe::testutil::gradcheck(fn, {z});
      EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << "normalize " << normalize << " k " << k << ": " << gc.summary();
      EXPECT_GT(gc.checked, 0);
    }
  }
}

}  // namespace
