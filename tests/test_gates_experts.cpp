// Gates and experts: formulas, registries, double-precision gradient checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dynamoe/moe/expert.h"
#include "dynamoe/moe/gate.h"
#include "dynamoe/util/error.h"
#include "module_gradcheck.h"

using namespace dynamoe;
using namespace dynamoe::moe;

namespace {
at::Tensor param(torch::nn::Module& m, const std::string& name) { return m.named_parameters()[name]; }
}  // namespace

TEST(Gates, EveryGateGradchecks) {
  for (const auto& name : gate_names()) {
    for (int64_t rank : {0, 2}) {
      if (rank > 0 && name.rfind("quadratic", 0) != 0) continue;
      torch::manual_seed(1);
      Gate g = make_gate(name, {5, 3, /*bias=*/true, rank, /*mlp_mult=*/2});
      // Perturb zero-initialised parameters so that every gradient path is exercised.
      {
        torch::NoGradGuard ng;
        for (auto& p : g->parameters()) p.add_(torch::randn_like(p) * 0.3);
      }
      auto r = testutil::module_gradcheck(*g, torch::randn({4, 5}), [&](const at::Tensor& x) { return g->forward(x); });
      EXPECT_LT(r.max_abs_error, 1e-7) << name << " rank " << rank << " worst " << r.worst;
      EXPECT_GT(r.checked, 20);
    }
  }
}

TEST(Gates, QuadraticFormulas) {
  torch::manual_seed(2);
  const int64_t D = 4, E = 3;
  at::Tensor x = torch::randn({6, D}, torch::kDouble);
  Gate poly = make_gate("quadratic_polynomial", {D, E});
  Gate mono = make_gate("quadratic_monomial", {D, E});
  poly->to(torch::kDouble);
  mono->to(torch::kDouble);
  {
    torch::NoGradGuard ng;
    param(*poly, "c").copy_(torch::randn({E}));
  }
  at::Tensor A = param(*poly, "A"), b = param(*poly, "b"), c = param(*poly, "c");
  at::Tensor z = poly->forward(x);
  for (int64_t t = 0; t < 6; ++t)
    for (int64_t i = 0; i < E; ++i) {
      double expect = (x[t].dot(A[i].mv(x[t])) + b[i].dot(x[t]) + c[i]).item<double>();
      EXPECT_NEAR(z[t][i].item<double>(), expect, 1e-12);
    }
  EXPECT_EQ(mono->named_parameters().find("b"), nullptr);  // no linear term
  at::Tensor zm = mono->forward(x), Am = param(*mono, "A");
  EXPECT_NEAR(zm[2][1].item<double>(), x[2].dot(Am[1].mv(x[2])).item<double>(), 1e-12);
}

// A_i = P_i^T Q_i with r = D and P, Q set from a full A gives the same logits.
TEST(Gates, LowRankWithFullRankEqualsFull) {
  for (std::string name : {"quadratic_polynomial", "quadratic_monomial"}) {
    torch::manual_seed(3);
    const int64_t D = 5, E = 4;
    Gate full = make_gate(name, {D, E}), low = make_gate(name, {D, E, false, /*rank=*/D});
    full->to(torch::kDouble);
    low->to(torch::kDouble);
    {
      torch::NoGradGuard ng;
      at::Tensor A = param(*full, "A");
      param(*low, "P").copy_(torch::eye(D, torch::kDouble).expand({E, D, D}));  // P_i = I
      param(*low, "Q").copy_(A);                                                 // Q_i = A_i
      param(*low, "c").copy_(param(*full, "c"));
      if (name == "quadratic_polynomial") param(*low, "b").copy_(param(*full, "b"));
    }
    at::Tensor x = torch::randn({7, D}, torch::kDouble);
    EXPECT_TRUE(torch::allclose(full->forward(x), low->forward(x), 1e-12, 1e-12)) << name;
  }
}

TEST(Gates, UnknownNameListsValidOnes) {
  try {
    make_gate("cubic", {4, 2});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("linear, mlp, quadratic_monomial, quadratic_polynomial"), std::string::npos)
        << e.what();
  }
}

TEST(Experts, EveryExpertGradchecks) {
  for (const auto& kind : expert_names()) {
    torch::manual_seed(4);
    Expert e = make_expert(kind, {4, 6, "gelu"});
    {
      torch::NoGradGuard ng;
      for (auto& p : e->parameters()) p.add_(torch::randn_like(p) * 0.3);
    }
    auto r = testutil::module_gradcheck(*e, torch::randn({3, 4}), [&](const at::Tensor& x) { return e->forward(x); });
    EXPECT_LT(r.max_abs_error, 1e-7) << kind << " worst " << r.worst;
  }
}

TEST(Experts, FormulasAndFlops) {
  torch::manual_seed(5);
  const int64_t D = 4, F = 6;
  at::Tensor x = torch::randn({3, D});
  Expert swiglu = make_expert("swiglu", {D, F});
  at::Tensor w1 = param(*swiglu, "w1"), w2 = param(*swiglu, "w2"), w3 = param(*swiglu, "w3");
  EXPECT_TRUE(torch::allclose(swiglu->forward(x), (torch::silu(x.mm(w1.t())) * x.mm(w3.t())).mm(w2.t())));
  EXPECT_EQ(swiglu->flops_per_token(), 6 * D * F);
  Expert ffn = make_expert("ffn", {D, F, "relu"});
  EXPECT_TRUE(torch::allclose(ffn->forward(x), torch::relu(x.mm(param(*ffn, "w1").t()) + param(*ffn, "b1"))
                                                       .mm(param(*ffn, "w2").t()) + param(*ffn, "b2")));
  EXPECT_EQ(ffn->flops_per_token(), 4 * D * F);
  Expert zero = make_expert("zero", {D, F}), copy = make_expert("copy", {D, F});
  EXPECT_TRUE(torch::equal(zero->forward(x), torch::zeros_like(x)));
  EXPECT_FALSE(zero->computes());
  EXPECT_TRUE(torch::equal(copy->forward(x), x));
  EXPECT_EQ(zero->flops_per_token() + copy->flops_per_token(), 0);
  Expert cst = make_expert("constant", {D, F});
  at::Tensor a = torch::softmax(x.mm(param(*cst, "wc").t()), 1);
  EXPECT_TRUE(torch::allclose(cst->forward(x), a.select(1, 0).unsqueeze(1) * x + a.select(1, 1).unsqueeze(1) * param(*cst, "v")));
  EXPECT_THROW(make_expert("mamba", {D, F}), ConfigError);
}
