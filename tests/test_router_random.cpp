// random router: exactly k experts per token with weight 1/k, reproducible with a generator,
// random in training and evaluation alike, and uniform over experts and over pairs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "dynamoe/moe/routers/random.h"
#include "dynamoe/moe/routing.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::RandomOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::random_route;

TEST(RandomRouter, ExactlyKExpertsWithWeightOneOverK) {
  at::Tensor z = at::randn({50, 5}, at::kDouble).requires_grad_(true);
  for (int64_t k : {1, 2, 3, 5, 9}) {
    RouterOptions opt;
    opt.k = k;
    Routing r = random_route(z, opt, RouterContext{});
    const int64_t kk = std::min<int64_t>(k, 5);
    EXPECT_TRUE((r.mask.sum(1) == kk).all().item<bool>()) << "k " << k;
    EXPECT_TRUE(at::allclose(r.weights, r.mask.to(at::kDouble) / static_cast<double>(kk)));
    EXPECT_FALSE(r.weights.requires_grad());
    EXPECT_TRUE(at::allclose(r.probs, at::softmax(z, -1)));
  }
}

TEST(RandomRouter, ReproducibleWithAGeneratorAndRandomInEvaluationToo) {
  at::Tensor z = at::zeros({64, 8});
  RouterContext ctx;
  ctx.training = false;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(5);
  Routing a = random_route(z, RouterOptions{}, ctx);
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(5);
  Routing b = random_route(z, RouterOptions{}, ctx);
  EXPECT_TRUE(a.mask.equal(b.mask));
  Routing c = random_route(z, RouterOptions{}, ctx);  // the generator moved on
  EXPECT_FALSE(a.mask.equal(c.mask));
  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(5);
  EXPECT_TRUE(random_route(z, RouterOptions{}, ctx).mask.equal(a.mask));  // the mode does not matter
  // Ignores the logits entirely.
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(5);
  EXPECT_TRUE(random_route(at::randn({64, 8}) * 5, RouterOptions{}, ctx).mask.equal(a.mask));
}

TEST(RandomRouter, UniformOverExpertsAndOverPairs) {
  const int64_t n = 15000, e = 6;
  RouterContext ctx;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(17);
  Routing r = random_route(at::zeros({n, e}), RouterOptions{}, ctx);  // k = 2
  at::Tensor load = r.mask.sum(0).to(at::kDouble) / static_cast<double>(n);
  EXPECT_TRUE(((load - 2.0 / e).abs() < 0.015).all().item<bool>()) << load;
  // each of the 15 pairs should appear ~1000 times
  std::map<std::pair<int64_t, int64_t>, int64_t> pairs;
  at::Tensor idx = r.mask.nonzero();  // [2N, 2], row-major: a token's two experts are consecutive
  auto acc = idx.accessor<int64_t, 2>();
  for (int64_t j = 0; j + 1 < idx.size(0); j += 2) pairs[{acc[j][1], acc[j + 1][1]}]++;
  EXPECT_EQ(pairs.size(), 15u);
  for (const auto& [pair, count] : pairs) EXPECT_NEAR(count, 1000, 150) << pair.first << "," << pair.second;
}

}  // namespace
