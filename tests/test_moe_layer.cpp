// MoELayer: the sparse path against a naive per-token loop for every router x expert kind,
// the dense-FFN invariant, capacity drops, the FLOPs metric and zero-computation experts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/dispatch.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/top_k.h"
#include "dynamoe/util/error.h"

using namespace dynamoe;
using namespace dynamoe::moe;

namespace {

MoELayerOptions layer_options(const std::string& router, const std::string& expert, int64_t E = 4, int64_t D = 6) {
  config::MoEConfig c;
  c.router = router_choice(router);
  c.experts.kind = expert;
  c.experts.hidden = 5;
  MoELayerOptions o = dynamoe::models::moe_layer_options(c, D, E);
  return o;
}

/// y_t = sum_{i in S_t} w_{t,i} Expert_i(x_t) + sum_j Shared_j(x_t), one token at a time.
at::Tensor naive_loop(MoELayerImpl& layer, const at::Tensor& x, const Routing& r) {
  std::vector<at::Tensor> rows;
  for (int64_t t = 0; t < x.size(0); ++t) {
    at::Tensor xt = x.narrow(0, t, 1);  // [1, D]
    at::Tensor yt = torch::zeros_like(xt);
    for (int64_t i = 0; i < r.mask.size(1); ++i)
      if (r.mask[t][i].item<bool>()) yt = yt + r.weights[t][i] * layer.experts()[i]->forward(xt);
    rows.push_back(yt);
  }
  return torch::cat(rows, 0);
}

}  // namespace

TEST(MoELayer, SparseEqualsNaiveLoopForEveryRouterAndExpert) {
  for (const auto& router : router_names()) {
    for (std::string expert : {"linear", "ffn", "swiglu"}) {
      for (bool training : {false, true}) {
        torch::manual_seed(11);
        MoELayerOptions o = layer_options(router, expert);
        o.n_copy = 1;
        o.n_zero = 1;
        o.n_constant = router == "hash" ? 0 : 1;
        MoELayer layer(o);
        layer->to(torch::kDouble);
        layer->train(training);
        at::Tensor x = torch::randn({9, 6}, torch::kDouble).requires_grad_(true);
        at::Tensor ids = torch::arange(9, torch::kLong) * 7;
        MoELayerOutput out = layer->forward(x, {}, ids);
        at::Tensor ref = naive_loop(*layer, x, out.routing);
        const std::string what = router + "/" + expert + (training ? "/train" : "/eval");
        ASSERT_TRUE(torch::allclose(out.y, ref, 1e-10, 1e-12)) << what;
        // Gradients of the input and of every parameter agree too.
        at::Tensor cot = torch::randn_like(ref);
        auto params = layer->parameters();
        std::vector<at::Tensor> wrt = {x};
        for (auto& p : params) wrt.push_back(p);
        auto g1 = torch::autograd::grad({(out.y * cot).sum()}, wrt, {}, true, false, true);
        auto g2 = torch::autograd::grad({(ref * cot).sum()}, wrt, {}, true, false, true);
        for (size_t i = 0; i < wrt.size(); ++i) {
          if (!g1[i].defined() || !g2[i].defined()) {
            EXPECT_EQ(g1[i].defined(), g2[i].defined()) << what << " tensor " << i;
            continue;
          }
          EXPECT_TRUE(torch::allclose(g1[i], g2[i], 1e-10, 1e-12)) << what << " tensor " << i;
        }
      }
    }
  }
}

TEST(MoELayer, OneExpertTopOneEqualsDenseFFN) {
  torch::manual_seed(12);
  MoELayerOptions o = layer_options("top_k", "ffn", /*E=*/1);
  o.router.as_mutable<TopKOptions>().k = 1;
  MoELayer layer(o);
  at::Tensor x = torch::randn({10, 6});
  at::Tensor y = layer->forward(x).y;
  auto p = layer->named_parameters();
  at::Tensor dense = torch::addmm(p["experts.0.b2"], torch::gelu(torch::addmm(p["experts.0.b1"], x, p["experts.0.w1"].t())),
                                  p["experts.0.w2"].t());
  EXPECT_TRUE(torch::allclose(y, dense, 1e-6, 1e-6));
}

TEST(MoELayer, DroplessDropsNothingAndCapacityDropsExactly) {
  torch::manual_seed(13);
  MoELayerOptions o = layer_options("top_k", "ffn", /*E=*/4);
  MoELayer dropless(o);
  at::Tensor x = torch::randn({64, 6});
  MoELayerOutput a = dropless->forward(x);
  EXPECT_EQ(a.stats.dropped, 0);
  EXPECT_EQ(a.routing.mask.sum().item<int64_t>(), 64 * 2);

  o.capacity_factor = 0.5;  // C = ceil(0.5 * 64 * 2 / 4) = 16
  MoELayer capped(o);
  {
    torch::NoGradGuard ng;
    for (size_t i = 0; i < capped->parameters().size(); ++i) capped->parameters()[i].copy_(dropless->parameters()[i]);
  }
  MoELayerOutput b = capped->forward(x);
  int64_t expected = 0;
  at::Tensor counts = a.routing.mask.sum(0);
  for (int64_t e = 0; e < 4; ++e) expected += std::max<int64_t>(0, counts[e].item<int64_t>() - 16);
  EXPECT_GT(expected, 0);
  EXPECT_EQ(b.stats.dropped, expected);
  EXPECT_NEAR(b.stats.drop_rate, double(expected) / 128, 1e-12);
  for (int64_t e = 0; e < 4; ++e) EXPECT_LE(b.routing.mask.select(1, e).sum().item<int64_t>(), 16);
}

TEST(MoELayer, FlopsAreTokensRoutedTimesExpertFlops) {
  torch::manual_seed(14);
  MoELayerOptions o = layer_options("top_p", "swiglu", /*E=*/6);
  o.n_zero = 1;
  o.n_copy = 1;
  MoELayer layer(o);
  MoELayerOutput out = layer->forward(torch::randn({40, 6}));
  double expected = 0;
  at::Tensor counts = out.routing.mask.sum(0);
  for (int64_t e = 0; e < 6; ++e) expected += counts[e].item<double>() * layer->experts()[e]->flops_per_token();
  EXPECT_DOUBLE_EQ(out.stats.expert_flops, expected);
  EXPECT_EQ(layer->experts()[4]->kind(), "copy");
  EXPECT_EQ(layer->experts()[5]->kind(), "zero");
}

TEST(MoELayer, TokensOnZeroAndCopyExpertsCostNoGemm) {
  torch::manual_seed(15);
  MoELayerOptions o = layer_options("top_k", "ffn", /*E=*/3);
  o.n_zero = 1;
  o.n_copy = 1;  // experts: 0 ffn, 1 copy, 2 zero
  MoELayer layer(o);
  {
    torch::NoGradGuard ng;  // a gate that sends every token to experts 1 and 2
    layer->named_parameters()["gate.weight"].zero_();
    layer->named_parameters()["gate.weight"][0].fill_(0);
  }
  // Logits z = 0 for all: make expert 0 the smallest with a bias-free trick: x >= 0 and W row 0 negative.
  {
    torch::NoGradGuard ng;
    layer->named_parameters()["gate.weight"][0].fill_(-1.0);
  }
  at::Tensor x = torch::rand({8, 6}) + 0.1;
  MoELayerOutput out = layer->forward(x);
  EXPECT_EQ(out.routing.mask.select(1, 0).sum().item<int64_t>(), 0);
  EXPECT_EQ(out.stats.expert_flops, 0.0);
  // y = w_copy * x (the zero expert adds nothing).
  EXPECT_TRUE(torch::allclose(out.y, out.routing.weights.select(1, 1).unsqueeze(1) * x));
}

TEST(MoELayer, DispatchGroupsByExpertAndCombineInverts) {
  at::Tensor mask = torch::tensor({1, 0, 1, 0, 1, 1, 1, 0, 0}, torch::kBool).view({3, 3});
  at::Tensor weights = torch::tensor({0.5, 0.0, 0.5, 0.0, 0.3, 0.7, 1.0, 0.0, 0.0}).view({3, 3});
  Dispatch d = plan_dispatch(mask);
  EXPECT_EQ(d.offsets, (std::vector<int64_t>{0, 2, 3, 5}));
  EXPECT_EQ(d.token_offsets, (std::vector<int64_t>{0, 2, 4, 5}));
  EXPECT_TRUE(torch::equal(d.token_index, torch::tensor({0, 2, 1, 0, 1}, torch::kLong)));
  EXPECT_TRUE(torch::equal(d.expert_index, torch::tensor({0, 0, 1, 2, 2}, torch::kLong)));
  EXPECT_TRUE(torch::equal(d.token_rows, torch::tensor({0, 3, 2, 4, 1}, torch::kLong)));
  at::Tensor x = torch::arange(6, torch::kFloat).view({3, 2});
  at::Tensor xs = dispatch(x, d);                                      // [5, 2]
  at::Tensor y = combine(xs, assignment_weights(weights, d), d);       // identity experts: y_t = sum_i w_ti x_t
  EXPECT_TRUE(torch::allclose(y, x * weights.sum(1, true)));
}

TEST(MoELayer, MixedKindsAndSharedExpertsRun) {
  torch::manual_seed(16);
  MoELayerOptions o = layer_options("dynamoe", "swiglu", /*E=*/8);
  o.n_zero = 1;
  o.n_copy = 1;
  o.n_constant = 2;
  o.n_shared = 1;
  o.k_max = 3;
  MoELayer layer(o);
  layer->train();
  MoELayerOutput out = layer->forward(torch::randn({16, 6}));
  EXPECT_EQ(out.y.sizes(), (std::vector<int64_t>{16, 6}));
  EXPECT_LE(out.routing.mask.sum(1).max().item<int64_t>(), 3);
  EXPECT_GT(out.stats.shared_flops, 0);
  out.y.sum().backward();
  EXPECT_TRUE(layer->named_parameters()["gate.weight"].grad().defined());
  o.n_experts = 3;
  EXPECT_THROW(MoELayer bad(o), ConfigError);  // 4 special experts do not fit in 3
}

TEST(MoELayer, BiasBalancingMovesTowardsBalance) {
  torch::manual_seed(17);
  MoELayerOptions o = layer_options("top_k", "ffn", /*E=*/4);
  o.router.as_mutable<TopKOptions>().k = 1;
  o.bias_balancing = true;
  o.bias_gamma = 0.1;
  MoELayer layer(o);
  layer->train();
  at::Tensor x = torch::randn({64, 6});
  MoELayerOutput out = layer->forward(x);
  layer->after_step();
  at::Tensor b = layer->named_buffers()["expert_bias"];
  at::Tensor load = out.routing.mask.sum(0).to(torch::kFloat);
  for (int64_t e = 0; e < 4; ++e) {
    const double diff = 16.0 - load[e].item<double>();
    EXPECT_FLOAT_EQ(b[e].item<float>(), diff > 0 ? 0.1f : diff < 0 ? -0.1f : 0.0f);
  }
}
