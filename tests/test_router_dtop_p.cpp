// dtop_p router (docs/methods.md section 9.2): the top_p rule at the controlled threshold P, the
// logit normalisation and its gradients (logits and gamma), the PI update with its clamps, the
// state as layer buffers that only training steps change, and the controller holding a
// layer's mean active experts at k* on a stream.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/dtop_p.h"
#include "dynamoe/moe/routers/top_p.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/util/error.h"
#include "gradcheck.h"
#include "test_util.h"

using namespace dynamoe;
using namespace dynamoe::moe;

namespace {

RouterState state_of(double P, double I = 0, double gamma = std::nan("")) {
  RouterState s{{"P", at::full({}, P, at::kDouble)}, {"I", at::full({}, I, at::kDouble)}};
  if (!std::isnan(gamma)) s["gamma"] = at::full({}, gamma, at::kDouble);
  return s;
}

Routing dtop_p(const at::Tensor& z, const DTopPOptions& opt, const RouterState& state, int64_t k_max = 0) {
  RouterContext ctx;
  ctx.state = &state;
  ctx.k_max = k_max;
  return functional::dtop_p_route(z, opt, ctx);
}

MoELayerOptions layer_options(const DTopPOptions& opt, int64_t E, int64_t D) {
  config::MoEConfig c;
  c.router = kind_choice("dtop_p", opt);
  c.experts.kind = "ffn";
  c.experts.hidden = 8;
  return models::moe_layer_options(c, D, E);
}

}  // namespace

TEST(DTopPRouter, IsTheTopPRuleAtTheStateThreshold) {
  at::manual_seed(3);
  const at::Tensor z = at::randn({50, 7}, at::kDouble) * 1.7;
  for (double P : {0.05, 0.3, 0.5, 0.8, 1.0}) {
    for (int64_t k_max : {0, 3}) {
      DTopPOptions opt;
      opt.temperature = 0.8;
      opt.max_k = 5;
      TopPOptions ref;
      ref.p = P;
      ref.temperature = 0.8;
      ref.max_k = 5;
      RouterContext ctx;
      ctx.k_max = k_max;
      const Routing a = dtop_p(z, opt, state_of(P), k_max), b = functional::top_p_route(z, ref, ctx);
      EXPECT_TRUE(a.mask.equal(b.mask)) << "P " << P;
      EXPECT_TRUE(at::allclose(a.weights, b.weights, 0, 0)) << "P " << P;
      EXPECT_TRUE(at::allclose(a.probs, b.probs, 0, 0));
    }
  }
}

TEST(DTopPRouter, NormalisedLogitsAreStandardisedAndScaledByGamma) {
  const at::Tensor z = at::tensor({1.0, 2.0, 4.0, 9.0, -3.0, -3.0, -3.0, -3.0}, at::kDouble).view({2, 4});
  DTopPOptions opt;
  opt.normalize_logits = true;
  opt.temperature = 2.0;
  const Routing r = dtop_p(z, opt, state_of(1.0, 0, 1.5));
  // Row 0: mean 4, population std sqrt((9 + 4 + 0 + 25) / 4).
  const double sd = std::sqrt(38.0 / 4.0);
  const at::Tensor zn = at::tensor({-3.0, -2.0, 0.0, 5.0}, at::kDouble) * (1.5 / (sd + 1e-6));
  EXPECT_TRUE(at::allclose(r.probs[0], at::softmax(zn / 2.0, -1), 1e-12, 1e-14)) << r.probs;
  // Row 1: equal logits stay equal (std 0): a uniform p, and all four reach P = 1.
  EXPECT_TRUE(at::allclose(r.probs[1], at::full({4}, 0.25, at::kDouble)));
  EXPECT_EQ(r.mask[1].sum().item<int64_t>(), 4);
  EXPECT_TRUE(r.logits.equal(z)) << "the z-loss keeps the gate's raw logits";
}

TEST(DTopPRouter, GradientsOfLogitsAndGammaMatchCentralDifferences) {
  at::manual_seed(5);
  // Logits chosen so that no cumulative sum is near P = 0.6 (stable selection under eps).
  const at::Tensor z = at::tensor({2.0, 0.1, -1.0, 0.3, 0.2, 1.9, -0.4, 0.0, -2.0, 0.5, 0.7, 3.0}, at::kDouble).view({3, 4});
  for (bool normalize : {false, true}) {
    DTopPOptions opt;
    opt.normalize_logits = true;
    opt.normalize = normalize;
    opt.temperature = 0.9;
    auto fn = [&](const std::vector<at::Tensor>& in) {
      RouterState s = state_of(0.6);
      s["gamma"] = in[1];
      return dtop_p(in[0], opt, s).weights;
    };
    auto gc = testutil::gradcheck(fn, {z, at::full({}, 1.3, at::kDouble)});
    EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << gc.summary();
    EXPECT_EQ(gc.checked, 13);
  }
}

TEST(DTopPRouter, ThePIUpdateAndItsClamps) {
  DTopPOptions opt;  // k* 2, P0 0.5, Kp 1, Ki 0.1
  RouterState s = state_of(0.5);
  RouterFeedback seen;
  seen.n_experts = 8;
  seen.tokens = 10;
  seen.assignments = 30;  // kbar 3: e = -1/8
  functional::dtop_p_update(opt, s, seen);
  EXPECT_DOUBLE_EQ(s["I"].item<double>(), -0.125);
  EXPECT_DOUBLE_EQ(s["P"].item<double>(), 0.5 - 0.125 - 0.0125);
  functional::dtop_p_update(opt, s, seen);  // the integral accumulates
  EXPECT_DOUBLE_EQ(s["I"].item<double>(), -0.25);
  EXPECT_DOUBLE_EQ(s["P"].item<double>(), 0.5 - 0.125 - 0.025);
  // Clamps: I to [-10, 10], P to [0.05, 1].
  s = state_of(0.5, 9.99);
  seen.assignments = 0;  // kbar 0: e = +0.25
  functional::dtop_p_update(opt, s, seen);
  EXPECT_DOUBLE_EQ(s["I"].item<double>(), 10.0);
  EXPECT_DOUBLE_EQ(s["P"].item<double>(), 1.0);
  s = state_of(0.5, -9.9);
  seen.assignments = 80;  // kbar 8: e = -0.75
  functional::dtop_p_update(opt, s, seen);
  EXPECT_DOUBLE_EQ(s["I"].item<double>(), -10.0);
  EXPECT_DOUBLE_EQ(s["P"].item<double>(), 0.05);
}

TEST(DTopPRouter, WithoutItsStateItIsAnErrorNamingIt) {
  testutil::expect_error([] { functional::dtop_p_route(at::zeros({2, 4}), DTopPOptions{}, RouterContext{}); },
                         {"dtop_p", "router.P"});
  DTopPOptions opt;
  opt.normalize_logits = true;
  const RouterState s = state_of(0.5);
  testutil::expect_error([&] { dtop_p(at::zeros({2, 4}), opt, s); }, {"router.gamma"});
}

TEST(DTopPRouter, StateIsInTheLayerStateDictAndOnlyTrainingStepsChangeIt) {
  torch::manual_seed(1);
  DTopPOptions opt;
  opt.normalize_logits = true;
  MoELayer layer(layer_options(opt, 6, 10));
  const auto named = io::state_dict(*layer);
  std::map<std::string, at::Tensor> by_name(named.begin(), named.end());
  ASSERT_TRUE(by_name.count("router.P") && by_name.count("router.I") && by_name.count("router.gamma"));
  EXPECT_DOUBLE_EQ(by_name["router.P"].item<double>(), 0.5);
  EXPECT_TRUE(layer->named_parameters().contains("router.gamma")) << "gamma is trained";
  EXPECT_FALSE(layer->named_parameters().contains("router.P")) << "P is a buffer";
  const at::Tensor x = torch::randn({32, 10});
  layer->eval();
  layer->forward(x);
  layer->after_step();
  EXPECT_DOUBLE_EQ(layer->router_state().at("P").item<double>(), 0.5) << "evaluation never moves the controller";
  layer->train();
  const MoELayerOutput out = layer->forward(x);
  EXPECT_DOUBLE_EQ(layer->router_state().at("P").item<double>(), 0.5) << "a forward alone moves nothing";
  EXPECT_DOUBLE_EQ(out.stats.router_state.at("P"), 0.5);
  layer->after_step();
  const double kbar = out.routing.mask.sum().item<double>() / 32.0, e = (2.0 - kbar) / 6.0;
  EXPECT_NEAR(layer->router_state().at("P").item<double>(), std::clamp(0.5 + e + 0.1 * e, 0.05, 1.0), 1e-7);
  layer->after_step();  // no forward since: nothing to update from
  EXPECT_NEAR(layer->router_state().at("I").item<double>(), e, 1e-7);
}

// On a stationary stream through a fixed layer, the controller finds the P whose mean count
// is k*: the mean over the last 100 steps is within 10% of k* (the acceptance bound).
TEST(DTopPRouter, ControllerHoldsTheMeanActiveExpertsAtTheTarget) {
  for (double target : {1.5, 2.0, 3.0}) {
    torch::manual_seed(9);
    DTopPOptions opt;
    opt.target_k = target;
    MoELayer layer(layer_options(opt, 8, 16));
    layer->train();
    torch::NoGradGuard no_grad;
    double sum = 0;
    int counted = 0;
    for (int step = 0; step < 600; ++step) {
      const MoELayerOutput out = layer->forward(torch::randn({128, 16}) * 3.0);
      layer->after_step();
      if (step >= 500) {
        sum += out.stats.active_mean;
        ++counted;
      }
    }
    const double kbar = sum / counted;
    std::cout << "[ dtop_p ] k* " << target << ": mean active experts over steps 500-599 " << kbar << ", P "
              << layer->router_state().at("P").item<double>() << "\n";
    EXPECT_NEAR(kbar, target, 0.1 * target);
  }
}
