// dynamoe router with scope: batch (docs/methods.md section 9.1): in training one tau-quantile
// over the batch's N*E values, in evaluation the running threshold tbar (so a token's experts
// depend on it alone), the tbar update, a count that varies per token, the layer against a
// naive loop, and tbar settling where the training threshold is.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/dynamoe.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"
#include "test_util.h"

using namespace dynamoe;
using namespace dynamoe::moe;

namespace {

DynamoeOptions batch_options(double tau = 0.5) {
  DynamoeOptions o;
  o.scope = "batch";
  o.sigma = 0;  // noise-free, so the expected sets can be computed here
  o.tau = tau;
  return o;
}

Routing route_batch(const at::Tensor& z, const DynamoeOptions& opt, bool training, double tbar, int64_t k_max = 0) {
  const RouterState s{{"tbar", at::full({}, tbar, at::kDouble)}};
  RouterContext ctx;
  ctx.training = training;
  ctx.state = &s;
  ctx.k_max = k_max;
  return functional::dynamoe_route(z, opt, ctx);
}

/// S = {g > t}, or {argmax g} when empty, then the k_max largest.
at::Tensor expected_mask(const at::Tensor& g, double t, int64_t k_max) {
  at::Tensor mask = g > t;
  const at::Tensor none = mask.any(-1).logical_not();
  const at::Tensor top = g.argmax(-1);
  for (int64_t i = 0; i < g.size(0); ++i)
    if (none[i].item<bool>()) mask[i][top[i].item<int64_t>()] = true;
  if (k_max > 0) {
    const at::Tensor order = std::get<1>(g.sort(-1, /*descending=*/true));
    for (int64_t i = 0; i < g.size(0); ++i)
      for (int64_t j = k_max; j < g.size(1); ++j) mask[i][order[i][j].item<int64_t>()] = false;
  }
  return mask;
}

}  // namespace

TEST(DynamoeBatchRouter, TrainingThresholdIsTheQuantileOfTheWholeBatch) {
  at::manual_seed(12);
  const at::Tensor z = at::randn({40, 6}, at::kDouble) * 2;
  const at::Tensor g = at::softmax(z / 0.5, -1);
  for (double tau : {0.3, 0.5, 0.8}) {
    for (int64_t k_max : {0, 2}) {
      const Routing r = route_batch(z, batch_options(tau), /*training=*/true, /*tbar=*/0.99, k_max);
      const double t = at::quantile(g.reshape({-1}), tau, c10::nullopt, false, "linear").item<double>();
      ASSERT_TRUE(r.has_batch_threshold);
      EXPECT_NEAR(r.batch_threshold, t, 1e-15) << "tau " << tau;
      EXPECT_TRUE(r.mask.equal(expected_mask(g, t, k_max))) << "tau " << tau << " k_max " << k_max;
      const at::Tensor w = at::softmax(g.masked_fill(r.mask.logical_not(), -INFINITY), -1);
      EXPECT_TRUE(at::allclose(r.weights, w, 1e-14, 1e-15));
    }
  }
}

TEST(DynamoeBatchRouter, EvaluationUsesTbarAndDecidesEachTokenAlone) {
  at::manual_seed(13);
  const at::Tensor z = at::randn({30, 8}, at::kDouble) * 2;
  const at::Tensor g = at::softmax(z / 0.5, -1);
  const Routing all = route_batch(z, batch_options(), /*training=*/false, /*tbar=*/0.07);
  EXPECT_FALSE(all.has_batch_threshold);
  EXPECT_TRUE(all.mask.equal(expected_mask(g, 0.07, 0)));
  for (int64_t t = 0; t < 30; ++t) {
    const Routing one = route_batch(z.narrow(0, t, 1), batch_options(), false, 0.07);
    EXPECT_TRUE(one.mask.equal(all.mask.narrow(0, t, 1))) << "token " << t;
    EXPECT_TRUE(at::allclose(one.weights, all.weights.narrow(0, t, 1), 0, 1e-15)) << "token " << t;
  }
}

TEST(DynamoeBatchRouter, TheCountVariesFromTokenToToken) {
  at::manual_seed(14);
  const Routing r = route_batch(at::randn({256, 8}, at::kDouble) * 2, batch_options(), true, 0.125);
  const at::Tensor count = r.mask.sum(-1).to(at::kDouble);
  std::cout << "[ dynamoe batch ] active experts per token: mean " << count.mean().item<double>() << ", sd "
            << count.std(/*unbiased=*/false).item<double>() << "\n";
  EXPECT_GT(count.std(false).item<double>(), 0.3);
  EXPECT_LT(count.min().item<double>(), count.max().item<double>());
}

TEST(DynamoeBatchRouter, TbarIsAnExponentialAverageOfTheTrainingThresholds) {
  DynamoeOptions opt = batch_options();
  opt.momentum = 0.25;
  RouterState s{{"tbar", at::full({}, 0.125, at::kDouble)}};
  RouterFeedback seen;
  seen.n_experts = 8;
  seen.tokens = 20;
  seen.thresholds = {0.2, 0.1};
  functional::dynamoe_update(opt, s, seen);
  EXPECT_DOUBLE_EQ(s["tbar"].item<double>(), 0.75 * (0.75 * 0.125 + 0.25 * 0.2) + 0.25 * 0.1);
  EXPECT_EQ(functional::dynamoe_state(opt, 8).at(0).name, "tbar");
  EXPECT_DOUBLE_EQ(functional::dynamoe_state(opt, 8).at(0).initial, 1.0 / 8);
  EXPECT_TRUE(functional::dynamoe_state(DynamoeOptions{}, 8).empty()) << "scope token has no state";
}

TEST(DynamoeBatchRouter, LayerEqualsANaiveLoopAndTbarSettlesAtTheTrainingThreshold) {
  torch::manual_seed(15);
  config::MoEConfig c;
  DynamoeOptions opt = batch_options();
  opt.sigma = 0.1;  // with the training noise, as configured by default
  opt.momentum = 0.05;
  c.router = kind_choice("dynamoe", opt);
  c.experts.kind = "ffn";
  c.experts.hidden = 8;
  MoELayer layer(models::moe_layer_options(c, /*dim=*/10, /*E=*/8));
  layer->to(torch::kDouble);
  ASSERT_TRUE(layer->named_buffers().contains("router.tbar"));
  EXPECT_DOUBLE_EQ(layer->router_state().at("tbar").item<double>(), 0.125);
  // The sparse layer against a per-token loop over its own routing, in evaluation.
  layer->eval();
  const at::Tensor x = torch::randn({24, 10}, torch::kDouble);
  const MoELayerOutput out = layer->forward(x);
  at::Tensor ref = torch::zeros_like(x);
  for (int64_t t = 0; t < 24; ++t)
    for (int64_t i = 0; i < 8; ++i)
      if (out.routing.mask[t][i].item<bool>())
        ref[t] += out.routing.weights[t][i] * layer->experts()[i]->forward(x.narrow(0, t, 1))[0];
  EXPECT_TRUE(torch::allclose(out.y, ref, 1e-12, 1e-12));
  // Training forwards and steps: tbar follows the batch thresholds.
  layer->train();
  torch::NoGradGuard no_grad;
  double last_t = 0;
  for (int step = 0; step < 300; ++step) {
    const MoELayerOutput o = layer->forward(torch::randn({64, 10}, torch::kDouble));
    last_t = o.routing.batch_threshold;
    layer->after_step();
  }
  const double tbar = layer->router_state().at("tbar").item<double>();
  std::cout << "[ dynamoe batch ] tbar after 300 steps " << tbar << ", last batch threshold " << last_t << "\n";
  EXPECT_NEAR(tbar, last_t, 0.2 * last_t);
}

TEST(DynamoeBatchRouter, ScopeIsCheckedByName) {
  DynamoeOptions opt;
  opt.scope = "sequence";
  testutil::expect_error([&] { functional::dynamoe_route(at::zeros({2, 4}), opt, RouterContext{}); }, {"scope", "sequence"});
}
