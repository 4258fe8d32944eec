// hash router: the documented splitmix64 values, the expert of each id, weight 1, errors for
// missing or misshapen token ids, and an even spread over experts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "dynamoe/moe/routers/hash.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/util/error.h"

namespace {

using dynamoe::moe::RouterContext;
using RouterOptions = dynamoe::moe::HashOptions;
using dynamoe::moe::Routing;
using dynamoe::moe::functional::hash_route;
using dynamoe::moe::functional::splitmix64;

TEST(HashRouter, Splitmix64KnownValues) {
  // Reference values computed independently (Python integers, mod 2^64).
  EXPECT_EQ(splitmix64(0), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(splitmix64(1), 0x910A2DEC89025CC1ULL);
  EXPECT_EQ(splitmix64(12345), 0x22118258A9D111A0ULL);
  EXPECT_EQ(splitmix64(~0ULL), 0xE4D971771B652C20ULL);
}

TEST(HashRouter, RoutesEachIdToItsHashModE) {
  RouterContext ctx;
  ctx.token_ids = at::tensor({0, 1, 2, 12345, -1}, at::kLong);
  at::Tensor z = at::randn({5, 5}, at::kFloat).requires_grad_(true);
  Routing r = hash_route(z, RouterOptions{}, ctx);
  const std::vector<int64_t> expected5 = {0, 0, 0, 4, 1};
  for (int64_t t = 0; t < 5; ++t) {
    EXPECT_EQ(r.mask[t].sum().item<int64_t>(), 1);
    EXPECT_TRUE(r.mask[t][expected5[t]].item<bool>()) << "token " << t;
  }
  EXPECT_TRUE(r.weights.equal(r.mask.to(at::kFloat)));  // weight 1
  EXPECT_FALSE(r.weights.requires_grad());
  EXPECT_TRUE(at::allclose(r.probs, at::softmax(z, -1)));  // for the auxiliary losses
  EXPECT_TRUE(r.probs.requires_grad());

  ctx.token_ids = at::tensor({0, 1, 2, 12345, -1}, at::kInt);  // any integer dtype
  r = hash_route(at::zeros({5, 7}, at::kDouble), RouterOptions{}, ctx);
  const std::vector<int64_t> expected7 = {2, 2, 4, 5, 0};
  for (int64_t t = 0; t < 5; ++t) EXPECT_TRUE(r.mask[t][expected7[t]].item<bool>()) << "token " << t;
}

TEST(HashRouter, SameIdSameExpertWhateverTheLogits) {
  RouterContext ctx;
  ctx.token_ids = at::tensor({42, 7, 42, 42}, at::kLong);
  Routing a = hash_route(at::randn({4, 6}), RouterOptions{}, ctx);
  Routing b = hash_route(at::randn({4, 6}) * 10, RouterOptions{}, ctx);
  EXPECT_TRUE(a.mask.equal(b.mask));
  EXPECT_TRUE(a.mask[0].equal(a.mask[2]) && a.mask[0].equal(a.mask[3]));
}

void expect_error_mentions(const std::function<void()>& fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning " << part;
  } catch (const dynamoe::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(HashRouter, NeedsTokenIdsOfTheRightShapeAndType) {
  at::Tensor z = at::zeros({3, 4});
  RouterContext ctx;
  expect_error_mentions([&] { hash_route(z, RouterOptions{}, ctx); }, "token_ids");
  ctx.token_ids = at::arange(4, at::kLong);
  expect_error_mentions([&] { hash_route(z, RouterOptions{}, ctx); }, "token_ids");
  ctx.token_ids = at::zeros({3, 1}, at::kLong);
  expect_error_mentions([&] { hash_route(z, RouterOptions{}, ctx); }, "token_ids");
  ctx.token_ids = at::zeros({3}, at::kFloat);
  expect_error_mentions([&] { hash_route(z, RouterOptions{}, ctx); }, "token_ids");
}

TEST(HashRouter, SpreadsConsecutiveIdsEvenly) {
  const int64_t n = 12000, e = 6;
  RouterContext ctx;
  ctx.token_ids = at::arange(n, at::kLong);
  Routing r = hash_route(at::zeros({n, e}), RouterOptions{}, ctx);
  at::Tensor load = r.mask.sum(0).to(at::kDouble) / static_cast<double>(n);
  EXPECT_TRUE(((load - 1.0 / e).abs() < 0.02).all().item<bool>()) << load;
}

}  // namespace
