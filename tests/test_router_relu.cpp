// relu router (ReMoE, docs/methods.md section 9.3): the active set and weights, empty sets, the L1
// penalty (plain and load-balanced) in the auxiliary loss, its gradients, and the multiplicative
// lambda update, alone and in a layer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/losses.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/relu.h"
#include "dynamoe/moe/routing.h"
#include "gradcheck.h"
#include "test_util.h"

using namespace dynamoe;
using namespace dynamoe::moe;

namespace {

RouterState lambda_state(double lambda) { return {{"lambda", at::full({}, lambda, at::kDouble)}}; }

Routing route_relu(const at::Tensor& z, const ReluOptions& opt = {}, double lambda = 0.5) {
  const RouterState s = lambda_state(lambda);
  RouterContext ctx;
  ctx.state = &s;
  return functional::relu_route(z, opt, ctx);
}

}  // namespace

TEST(ReluRouter, ActiveWherePositiveWeightsAreTheReluAndSetsMayBeEmpty) {
  const at::Tensor z = at::tensor({1.5, -0.2, 0.0, 0.3, -1.0, -2.0, -0.1, -5.0}, at::kDouble).view({2, 4});
  const Routing r = route_relu(z);
  EXPECT_TRUE(r.mask.equal(at::tensor({1, 0, 0, 1, 0, 0, 0, 0}, at::kInt).view({2, 4}).to(at::kBool))) << r.mask;
  EXPECT_TRUE(r.weights.equal(at::relu(z)));
  EXPECT_EQ(r.assignments_before_capacity, 2);
  EXPECT_TRUE(at::allclose(r.probs, at::softmax(z, -1)));
  EXPECT_EQ(r.mask[1].sum().item<int64_t>(), 0) << "a token may get no routed expert";
}

TEST(ReluRouter, PenaltyIsLambdaTimesTheMeanL1InTheAuxLoss) {
  const at::Tensor z = at::tensor({1.0, 2.0, -1.0, 0.5, -1.0, 3.0}, at::kDouble).view({3, 2});
  Routing r = route_relu(z, {}, 0.25);
  ASSERT_TRUE(r.penalty.per_token.defined());
  EXPECT_TRUE(at::allclose(r.penalty.per_token, at::tensor({3.0, 0.5, 3.0}, at::kDouble)));
  LossCoefficients none;
  none.load_balance = none.z_loss = 0;
  AuxLosses aux = aux_losses(r, none);
  EXPECT_DOUBLE_EQ(aux.values.at("relu_l1"), 6.5 / 3);
  EXPECT_DOUBLE_EQ(aux.total.item<double>(), 0.25 * 6.5 / 3);
  // Balanced: expert 0 has 1 of the 4 assignments, expert 1 has 3: c = E f = [2 / 4, 2 * 3 / 4].
  ReluOptions opt;
  opt.balance = true;
  r = route_relu(z, opt, 0.25);
  const double c0 = 0.5, c1 = 1.5;
  EXPECT_TRUE(at::allclose(r.penalty.per_token, at::tensor({c0 * 1 + c1 * 2, c1 * 0.5, c1 * 3}, at::kDouble)))
      << r.penalty.per_token;
}

TEST(ReluRouter, GradientsMatchCentralDifferences) {
  const at::Tensor z = at::tensor({1.0, -0.7, 0.4, 2.0, -1.3, 0.9, 0.2, -0.5, 1.1}, at::kDouble).view({3, 3});
  for (bool balance : {false, true}) {
    ReluOptions opt;
    opt.balance = balance;
    auto weights = [&](const std::vector<at::Tensor>& in) { return route_relu(in[0], opt).weights; };
    auto gc = testutil::gradcheck(weights, {z});
    EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << gc.summary();
    auto penalty = [&](const std::vector<at::Tensor>& in) { return aux_losses(route_relu(in[0], opt), {}).total; };
    gc = testutil::gradcheck(penalty, {z});
    EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << gc.summary();
  }
}

TEST(ReluRouter, LambdaGrowsWhenTooManyAreActiveAndShrinksWhenTooFew) {
  ReluOptions opt;  // k* 2, alpha 1.2
  RouterFeedback seen;
  seen.n_experts = 8;
  seen.tokens = 4;
  RouterState s = lambda_state(1e-3);
  seen.assignments = 16;  // s = 0.5 < s* = 0.75: too dense
  functional::relu_update(opt, s, seen);
  EXPECT_DOUBLE_EQ(s["lambda"].item<double>(), 1.2e-3);
  seen.assignments = 4;  // s = 0.875 > 0.75: too sparse
  functional::relu_update(opt, s, seen);
  EXPECT_NEAR(s["lambda"].item<double>(), 1e-3, 1e-15);
  seen.assignments = 8;  // exactly on target
  functional::relu_update(opt, s, seen);
  EXPECT_NEAR(s["lambda"].item<double>(), 1e-3, 1e-15);
}

// In a layer: the state is the buffer router.lambda, forward passes alone leave it, and a step
// moves it by alpha toward the target density (up while denser than k*, down while sparser).
TEST(ReluRouter, LayerStepsMoveLambdaTowardTheTargetDensity) {
  for (double target : {1.0, 7.0}) {
    torch::manual_seed(4);
    config::MoEConfig c;
    ReluOptions opt;
    opt.target_k = target;
    opt.lambda0 = 0.01;
    c.router = kind_choice("relu", opt);
    c.experts.kind = "ffn";
    c.experts.hidden = 8;
    MoELayer layer(models::moe_layer_options(c, /*dim=*/12, /*E=*/8));
    ASSERT_TRUE(layer->named_buffers().contains("router.lambda"));
    layer->train();
    const MoELayerOutput out = layer->forward(torch::randn({64, 12}));
    EXPECT_DOUBLE_EQ(layer->router_state().at("lambda").item<double>(), 0.01f);
    EXPECT_DOUBLE_EQ(out.stats.losses.at("relu_l1"), out.routing.weights.sum(-1).mean().item<double>());
    layer->after_step();
    const double k = out.stats.active_mean;  // about E/2 for a random gate
    ASSERT_GT(k, 1.0);
    ASSERT_LT(k, 7.0);
    EXPECT_NEAR(layer->router_state().at("lambda").item<double>(), target < k ? 0.012 : 0.01 / 1.2, 1e-9) << "k " << k;
  }
}
