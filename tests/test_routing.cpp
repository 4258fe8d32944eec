// The router registry (names, errors, causality), invariants every registered router must
// satisfy, and the capacity limit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "dynamoe/moe/routers/top_k.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/util/error.h"
#include "gradcheck.h"

namespace {

using dynamoe::moe::apply_capacity;
using dynamoe::moe::capacity_for;
using dynamoe::moe::route;
using dynamoe::moe::router_is_causal;
using dynamoe::moe::router_names;
using dynamoe::moe::RouterContext;
using dynamoe::moe::router_state_specs;
using dynamoe::moe::RouterState;
using dynamoe::moe::router_choice;
using dynamoe::moe::Routing;

// The registry holds exactly the routers of src/dynamoe/moe/routers/ (each file registers
// itself), sorted, and the built-in ones are among them.
TEST(RouterRegistry, HoldsEveryRouterOfTheRoutersFolderSorted) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(std::string(DYNAMOE_SOURCE_DIR) + "/src/dynamoe/moe/routers"))
    if (e.path().extension() == ".cpp") files.push_back(e.path().stem().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(router_names(), files);
  for (const char* built_in : {"dynamoe", "expert_choice", "hash", "random", "threshold", "top_k", "top_p", "tsallis_hybrid"})
    EXPECT_NE(std::find(files.begin(), files.end(), built_in), files.end()) << built_in;
}

TEST(RouterRegistry, UnknownNameIsAConfigErrorListingEveryValidName) {
  const at::Tensor z = at::zeros({2, 3});
  try {
    route("top_q", z, dynamoe::NoOptions{}, RouterContext{});
    FAIL() << "expected a ConfigError";
  } catch (const dynamoe::ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("top_q"), std::string::npos) << msg;
    for (const std::string& name : router_names()) EXPECT_NE(msg.find(name), std::string::npos) << msg;
  }
  EXPECT_THROW(router_is_causal("nope"), dynamoe::ConfigError);
}

TEST(RouterRegistry, RegisteringATakenNameIsAnError) {
  const auto kind = dynamoe::moe::router_registry().at("random");
  const size_t before = router_names().size();
  EXPECT_THROW(dynamoe::moe::router_registry().add("top_k", kind), dynamoe::Error);
  EXPECT_THROW(dynamoe::moe::router_registry().add("", kind), dynamoe::Error);
  EXPECT_EQ(router_names().size(), before);
}

TEST(RouterRegistry, OnlyExpertChoiceIsNotCausal) {
  for (const std::string& name : router_names()) EXPECT_EQ(router_is_causal(name), name != "expert_choice") << name;
}

TEST(RouterRegistry, EveryRouterHasItsOwnTestFile) {
  for (const std::string& name : router_names()) {
    const std::string path = std::string(DYNAMOE_SOURCE_DIR) + "/tests/test_router_" + name + ".cpp";
    EXPECT_TRUE(std::filesystem::exists(path)) << "router '" << name << "' has no test file " << path;
  }
}

TEST(RouterRegistry, BadLogitsAreErrors) {
  for (const std::string& name : router_names()) {
    RouterContext ctx;
    ctx.token_ids = at::arange(4, at::kLong);
    EXPECT_THROW(route(name, at::zeros({4}), router_choice(name).options(), ctx), dynamoe::Error) << name;
    EXPECT_THROW(route(name, at::zeros({4, 0}), router_choice(name).options(), ctx), dynamoe::Error) << name;
    EXPECT_THROW(route(name, at::zeros({4, 3}, at::kLong), router_choice(name).options(), ctx), dynamoe::Error) << name;
  }
}

// The contract every router honours, for several shapes, both dtypes and both modes.
TEST(RouterRegistry, EveryRouterSatisfiesTheGenericInvariants) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {1, 5}, {7, 1}, {16, 6}, {5, 8}, {32, 4}, {0, 3}};
  for (const std::string& name : router_names()) {
    const bool token_choice = router_is_causal(name);
    const bool constant_weights = name == "hash" || name == "random";
    for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
      for (bool training : {false, true}) {
        for (auto [n, e] : shapes) {
          SCOPED_TRACE(name + " " + std::string(c10::toString(dtype)) + (training ? " train" : " eval") + " N=" +
                       std::to_string(n) + " E=" + std::to_string(e));
          at::manual_seed(n * 100 + e);
          at::Tensor z = (at::randn({n, e}, at::kDouble) * 2).to(dtype).requires_grad_(true);
          RouterContext ctx;
          ctx.training = training;
          ctx.token_ids = at::arange(n, at::kLong) * 7 + 3;
          ctx.generator = at::make_generator<at::CPUGeneratorImpl>(42);
          RouterState state;  // a controller's initial state (docs/methods.md section 9)
          for (const auto& s : router_state_specs(router_choice(name), e)) state[s.name] = at::full({}, s.initial, dtype);
          ctx.state = &state;
          Routing r = route(name, z, router_choice(name).options(), ctx);

          ASSERT_TRUE(r.weights.defined() && r.mask.defined() && r.probs.defined() && r.logits.defined());
          EXPECT_EQ(r.weights.sizes(), z.sizes());
          EXPECT_EQ(r.mask.sizes(), z.sizes());
          EXPECT_EQ(r.probs.sizes(), z.sizes());
          EXPECT_EQ(r.logits.sizes(), z.sizes());
          EXPECT_EQ(r.weights.scalar_type(), dtype);
          EXPECT_EQ(r.probs.scalar_type(), dtype);
          EXPECT_EQ(r.mask.scalar_type(), at::kBool);
          EXPECT_TRUE(at::isfinite(r.weights).all().item<bool>());
          EXPECT_TRUE((r.weights >= 0).all().item<bool>());
          EXPECT_TRUE((r.weights.masked_select(r.mask.logical_not()) == 0).all().item<bool>());
          EXPECT_TRUE((r.weights.masked_select(r.mask) > 0).all().item<bool>());
          if (token_choice && name != "relu") {  // relu may leave a token without routed experts
            EXPECT_TRUE(r.mask.any(1).all().item<bool>()) << "a token got no expert";
          }
          EXPECT_EQ(r.assignments_before_capacity, r.mask.sum().item<int64_t>());
          EXPECT_EQ(r.dropped, 0);
          EXPECT_EQ(r.weights.requires_grad(), !constant_weights);

          // Same inputs and the same generator seed: the same decision.
          ctx.generator = at::make_generator<at::CPUGeneratorImpl>(42);
          Routing again = route(name, z, router_choice(name).options(), ctx);
          EXPECT_TRUE(again.mask.equal(r.mask));
          EXPECT_TRUE(again.weights.equal(r.weights));
        }
      }
    }
  }
}

// --- the gradient checker of tests/gradcheck.h, used by every router test ----------------------

TEST(GradCheck, PassesACorrectGradientAndCatchesAWrongOne) {
  at::manual_seed(21);
  const at::Tensor a = at::randn({3, 4}, at::kDouble);
  const at::Tensor b = at::randn({4}, at::kDouble);
  auto right = [](const std::vector<at::Tensor>& in) { return at::tanh(in[0] * in[1]).pow(2); };
  auto gc = dynamoe::testutil::gradcheck(right, {a, b});
  EXPECT_TRUE(gc.ok(1e-8, 1e-6)) << gc.summary();
  EXPECT_EQ(gc.checked, 16);
  EXPECT_LT(gc.max_rel_error, 1e-6);
  // x * x.detach() has autograd gradient x but true derivative 2x.
  auto wrong = [](const std::vector<at::Tensor>& in) { return in[0] * in[0].detach(); };
  auto bad = dynamoe::testutil::gradcheck(wrong, {a});
  EXPECT_FALSE(bad.ok(1e-6, 1e-5));
  EXPECT_NEAR(bad.max_rel_error, 0.5, 1e-6);
}

// --- capacity -------------------------------------------------------------------------------

TEST(Capacity, CapacityForIsTheCeilingOfTheSpecFormula) {
  EXPECT_EQ(capacity_for(1.0, 8, 2, 4), 4);     // 4 exactly
  EXPECT_EQ(capacity_for(1.25, 10, 2, 4), 7);   // 6.25 -> 7
  EXPECT_EQ(capacity_for(1.1, 10, 1, 11), 1);   // 1.0000000000000002 in doubles, 1 exactly
  EXPECT_EQ(capacity_for(0.5, 3, 1.5, 8), 1);   // 0.28 -> 1
  EXPECT_EQ(capacity_for(2.0, 100, 1, 8), 25);
  EXPECT_EQ(capacity_for(0.0, 13, 2, 4), 13);   // dropless
  EXPECT_EQ(capacity_for(-1.0, 13, 2, 4), 13);  // dropless
  EXPECT_THROW(capacity_for(1.0, 4, 2, 0), dynamoe::Error);
}

// Hand-built routing: 5 tokens, 3 experts.
Routing hand_routing() {
  // With capacity 2:
  // expert 0 is wanted by tokens 0..4 with weights .5 .9 .5 .2 .7 -> keeps 1 and 4, drops 3
  // expert 1 is wanted by tokens 0, 2, 3 with weights .5 .5 .5 (ties) -> keeps 0 and 2, drops 1
  // expert 2 is wanted by token 1 only                              -> keeps it
  at::Tensor w = at::tensor({0.5, 0.5, 0.0,   //
                             0.9, 0.0, 0.1,   //
                             0.5, 0.5, 0.0,   //
                             0.2, 0.5, 0.0,   //
                             0.7, 0.0, 0.0},  //
                            at::kDouble)
                     .view({5, 3});
  Routing r;
  r.mask = w > 0;
  r.weights = w;
  r.assignments_before_capacity = 9;
  return r;
}

TEST(Capacity, KeepsTheHeaviestAssignmentsAndCountsTheDropped) {
  Routing r = hand_routing();
  apply_capacity(r, 2);
  at::Tensor expected_mask = at::tensor({0, 1, 0,  //
                                         1, 0, 1,  //
                                         0, 1, 0,  //
                                         0, 0, 0,  //
                                         1, 0, 0},
                                        at::kInt)
                                 .view({5, 3})
                                 .to(at::kBool);
  EXPECT_TRUE(r.mask.equal(expected_mask)) << r.mask;
  EXPECT_EQ(r.dropped, 4);  // tokens 0, 2, 3 on expert 0 and token 3 on expert 1
  EXPECT_TRUE(r.weights.equal(hand_routing().weights * expected_mask)) << r.weights;
  EXPECT_EQ(r.assignments_before_capacity, 9);
  // A second, tighter limit adds to the count: token 4 on expert 0, token 2 on expert 1.
  apply_capacity(r, 1);
  EXPECT_EQ(r.dropped, 4 + 2);
  EXPECT_EQ(r.mask.sum(0).max().item<int64_t>(), 1);
}

TEST(Capacity, ZeroCapacityDropsEverythingAndNegativeIsAnError) {
  Routing r = hand_routing();
  apply_capacity(r, 0);
  EXPECT_EQ(r.dropped, 9);
  EXPECT_FALSE(r.mask.any().item<bool>());
  Routing s = hand_routing();
  EXPECT_THROW(apply_capacity(s, -1), dynamoe::Error);
}

TEST(Capacity, DroplessAndFullCapacityDropNothing) {
  at::manual_seed(3);
  for (const char* name : {"top_k", "top_p", "threshold", "dynamoe", "tsallis_hybrid"}) {
    at::Tensor z = at::randn({64, 4}, at::kDouble) * 3;
    Routing r = route(name, z, router_choice(name).options(), RouterContext{});
    Routing before = r;
    const double k_mean = static_cast<double>(r.assignments_before_capacity) / 64.0;
    apply_capacity(r, capacity_for(0.0, 64, k_mean, 4));  // dropless
    EXPECT_EQ(r.dropped, 0) << name;
    EXPECT_TRUE(r.mask.equal(before.mask)) << name;
    EXPECT_TRUE(r.weights.equal(before.weights)) << name;
    apply_capacity(r, capacity_for(4.0 / k_mean, 64, k_mean, 4));  // C = N
    EXPECT_EQ(r.dropped, 0) << name;
    EXPECT_TRUE(r.mask.equal(before.mask)) << name;
  }
}

TEST(Capacity, MatchesANaivePerExpertLoop) {
  at::manual_seed(11);
  at::Tensor z = at::randn({40, 5}, at::kDouble);
  dynamoe::moe::TopKOptions opt;
  opt.k = 2;
  Routing r = route("top_k", z, opt, RouterContext{});
  Routing naive = r;
  const int64_t capacity = capacity_for(1.0, 40, 2, 5) - 5;  // 16 - 5: a tight limit
  apply_capacity(r, capacity);
  int64_t dropped = 0;
  at::Tensor keep = at::zeros({40, 5}, at::kBool);
  for (int64_t i = 0; i < 5; ++i) {
    std::vector<std::pair<double, int64_t>> wanted;  // (-weight, token): sorts heaviest first, then lower token
    for (int64_t t = 0; t < 40; ++t)
      if (naive.mask[t][i].item<bool>()) wanted.emplace_back(-naive.weights[t][i].item<double>(), t);
    std::sort(wanted.begin(), wanted.end());
    for (size_t j = 0; j < wanted.size(); ++j) {
      if (static_cast<int64_t>(j) < capacity)
        keep[wanted[j].second][i] = true;
      else
        ++dropped;
    }
  }
  EXPECT_GT(dropped, 0);
  EXPECT_EQ(r.dropped, dropped);
  EXPECT_TRUE(r.mask.equal(keep));
}

TEST(Capacity, KeptWeightsStayDifferentiable) {
  at::Tensor z = at::randn({8, 4}, at::kDouble).requires_grad_(true);
  Routing r = route("top_k", z, router_choice("top_k").options(), RouterContext{});
  apply_capacity(r, 2);
  ASSERT_TRUE(r.weights.requires_grad());
  r.weights.sum().backward();
  EXPECT_TRUE(z.grad().defined());
}

}  // namespace
