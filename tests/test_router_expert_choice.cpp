// expert_choice router: the capacity formula, hand-computed choices (tokens with 0 and with
// several experts), a naive per-expert loop, non-causality, and gradient checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "dynamoe/moe/routers/expert_choice.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/util/error.h"
#include "gradcheck.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::ExpertChoiceOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::expert_choice_capacity;
using dynamoe::moe::functional::expert_choice_route;

at::Tensor table(const std::vector<double>& v, int64_t n, int64_t e) { return at::tensor(v, at::kDouble).view({n, e}); }
at::Tensor bools(const std::vector<int>& v, int64_t n, int64_t e) {
  return at::tensor(v, at::kInt).view({n, e}).to(at::kBool);
}

TEST(ExpertChoiceRouter, CapacityFormula) {
  RouterOptions opt;  // capacity 1, k 2
  EXPECT_EQ(expert_choice_capacity(opt, 8, 4), 4);  // 1 * 8 * 2 / 4
  opt.k = 1;
  EXPECT_EQ(expert_choice_capacity(opt, 10, 4), 3);  // 2.5 -> 3
  opt.capacity = 1.1;
  EXPECT_EQ(expert_choice_capacity(opt, 10, 11), 1);  // 1.0000000000000002 in doubles
  opt.capacity = 0.01;
  EXPECT_EQ(expert_choice_capacity(opt, 10, 4), 1);  // at least 1
  opt.capacity = 100;
  EXPECT_EQ(expert_choice_capacity(opt, 10, 4), 10);  // at most N
  opt.capacity = 0;
  EXPECT_THROW(expert_choice_capacity(opt, 10, 4), dynamoe::Error);
}

// p for 3 tokens, 3 experts.
const std::vector<double> kP = {0.5, 0.4, 0.1,  //
                                0.2, 0.2, 0.6,  //
                                0.4, 0.35, 0.25};

TEST(ExpertChoiceRouter, HandComputedChoices) {
  at::Tensor z = table(kP, 3, 3).log();
  RouterOptions opt;
  opt.k = 1;  // C = 1: expert 0 takes t0 (.5), expert 1 takes t0 (.4), expert 2 takes t1 (.6)
  Routing r = expert_choice_route(z, opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({1, 1, 0, 0, 0, 1, 0, 0, 0}, 3, 3))) << r.mask;  // token 2 gets nothing
  EXPECT_TRUE(at::allclose(r.weights, table({0.5, 0.4, 0, 0, 0, 0.6, 0, 0, 0}, 3, 3))) << r.weights;
  EXPECT_EQ(r.assignments_before_capacity, 3);

  opt.k = 2;  // C = 2: expert 0 {t0, t2}, expert 1 {t0, t2}, expert 2 {t1, t2}
  r = expert_choice_route(z, opt, RouterContext{});
  EXPECT_TRUE(r.mask.equal(bools({1, 1, 0, 0, 0, 1, 1, 1, 1}, 3, 3))) << r.mask;  // token 2 gets all three
  EXPECT_TRUE(at::allclose(r.weights, table({0.5, 0.4, 0, 0, 0, 0.6, 0.4, 0.35, 0.25}, 3, 3))) << r.weights;

  opt.capacity = 5;  // C clamped to N: every pair
  r = expert_choice_route(z, opt, RouterContext{});
  EXPECT_TRUE(r.mask.all().item<bool>());
  EXPECT_TRUE(at::allclose(r.weights, r.probs));
}

TEST(ExpertChoiceRouter, MatchesANaivePerExpertLoop) {
  at::manual_seed(13);
  const int64_t n = 30, e = 4;
  at::Tensor z = at::randn({n, e}, at::kDouble);
  RouterOptions opt;
  opt.k = 1;
  opt.temperature = 0.5;
  const int64_t c = expert_choice_capacity(opt, n, e);  // ceil(30 / 4) = 8
  EXPECT_EQ(c, 8);
  Routing r = expert_choice_route(z, opt, RouterContext{});
  at::Tensor p = at::softmax(z / 0.5, -1);
  for (int64_t i = 0; i < e; ++i) {
    std::vector<std::pair<double, int64_t>> col;
    for (int64_t t = 0; t < n; ++t) col.emplace_back(-p[t][i].item<double>(), t);
    std::sort(col.begin(), col.end());
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(r.mask[col[j].second][i].item<bool>(), j < c) << "expert " << i;
  }
  EXPECT_EQ(r.mask.sum().item<int64_t>(), c * e);
}

TEST(ExpertChoiceRouter, IsNotCausal) {
  EXPECT_FALSE(dynamoe::moe::router_is_causal("expert_choice"));
  // Token 0's experts change when another token of the batch changes.
  at::Tensor z = table(kP, 3, 3).log();
  RouterOptions opt;
  opt.k = 1;
  Routing a = expert_choice_route(z, opt, RouterContext{});
  at::Tensor z2 = z.clone();
  z2[2] = table({0.9, 0.05, 0.05}, 1, 3).log()[0];
  Routing b = expert_choice_route(z2, opt, RouterContext{});
  EXPECT_FALSE(a.mask[0].equal(b.mask[0]));
}

TEST(ExpertChoiceRouter, GradientsMatchCentralDifferences) {
  at::manual_seed(14);
  at::Tensor z = at::randn({6, 3}, at::kDouble) * 2;
  for (int64_t k : {1, 2}) {
    RouterOptions opt;
    opt.k = k;
    opt.temperature = 1.5;
    auto fn = [&](const std::vector<at::Tensor>& in) { return expert_choice_route(in[0], opt, RouterContext{}).weights; };
    auto gc = dynamoe::testutil::gradcheck(fn, {z});
    EXPECT_TRUE(gc.ok(1e-7, 1e-5)) << "k " << k << ": " << gc.summary();
    EXPECT_EQ(gc.checked, 18);
  }
}

}  // namespace
