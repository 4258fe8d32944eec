// The fast sparse path: the dispatch plan, the dispatch/combine kernels and grouped experts,
// against plain autograd (a per-expert loop of the expert modules), in double precision with
// central-difference gradient checks, and the bf16 mixed-precision path against fp32.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/dispatch.h"
#include "dynamoe/moe/expert.h"
#include "dynamoe/moe/grouped_experts.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/util/buffer_pool.h"
#include "gradcheck.h"

using namespace dynamoe;
using namespace dynamoe::moe;

namespace {

/// A random routing mask [N, E] with about `density` of the pairs active; token 0 and the last
/// expert are left empty on purpose.
at::Tensor random_mask(int64_t N, int64_t E, double density) {
  at::Tensor m = torch::rand({N, E}) < density;
  m[0].fill_(false);
  m.select(1, E - 1).fill_(false);
  return m;
}

/// Parameters of `experts` in grouped order.
std::vector<at::Tensor> grouped_params(const std::vector<Expert>& experts, const std::string& kind) {
  std::vector<at::Tensor> p;
  for (const auto& e : experts) {
    auto named = e->named_parameters(false);
    for (const auto& n : grouped_param_names(kind)) p.push_back(named[n]);
  }
  return p;
}

/// The reference: each expert module on its block of rows, concatenated.
at::Tensor loop_experts(const std::vector<Expert>& experts, const at::Tensor& xs, const std::vector<int64_t>& off) {
  std::vector<at::Tensor> outs;
  for (size_t e = 0; e < experts.size(); ++e)
    if (off[e + 1] > off[e]) outs.push_back(experts[e]->forward(xs.narrow(0, off[e], off[e + 1] - off[e])));
  return torch::cat(outs, 0);
}

/// max |a - b| / max |b| over the pair.
double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>() /
         std::max(b.abs().max().item<double>(), 1e-30);
}

struct ExpertCase {
  std::string kind, activation;
};
const std::vector<ExpertCase> kCases = {{"linear", "gelu"}, {"ffn", "relu"}, {"ffn", "gelu"},
                                        {"ffn", "silu"},    {"ffn", "tanh"}, {"swiglu", "gelu"}};

}  // namespace

TEST(Dispatch, PlanIsAStableSortByExpertWithItsInverseByToken) {
  torch::manual_seed(1);
  at::Tensor mask = random_mask(37, 6, 0.4);
  Dispatch d = plan_dispatch(mask);
  at::Tensor pairs = at::nonzero(mask.t());  // (expert, token), sorted by expert then token
  EXPECT_TRUE(torch::equal(d.expert_index, pairs.select(1, 0)));
  EXPECT_TRUE(torch::equal(d.token_index, pairs.select(1, 1)));
  EXPECT_EQ(d.size(), mask.sum().item<int64_t>());
  EXPECT_EQ(d.count(5), 0);
  // token_rows lists every row once, grouped by token, experts ascending within a token
  std::vector<int> seen(d.size(), 0);
  for (int64_t t = 0; t < 37; ++t) {
    int64_t last_e = -1;
    EXPECT_EQ(d.token_offsets[t + 1] - d.token_offsets[t], mask[t].sum().item<int64_t>());
    for (int64_t j = d.token_offsets[t]; j < d.token_offsets[t + 1]; ++j) {
      const int64_t row = d.token_rows[j].item<int64_t>();
      ++seen[row];
      EXPECT_EQ(d.token_index[row].item<int64_t>(), t);
      EXPECT_GT(d.expert_index[row].item<int64_t>(), last_e);
      last_e = d.expert_index[row].item<int64_t>();
    }
  }
  for (int s : seen) EXPECT_EQ(s, 1);
}

TEST(Dispatch, DispatchAndCombinePassGradientCheck) {
  torch::manual_seed(2);
  at::Tensor mask = random_mask(7, 4, 0.5);
  Dispatch d = plan_dispatch(mask);
  at::Tensor scale = torch::randn({d.size(), 3}, torch::kDouble);  // a stand-in "expert": rows scaled elementwise
  auto fn = [&](const std::vector<at::Tensor>& in) {
    at::Tensor xs = dispatch(in[0], d);                                 // [A, 3]
    return combine(xs * scale + xs * xs, assignment_weights(in[1], d), d);  // [7, 3]
  };
  auto gc = testutil::gradcheck(fn, {torch::randn({7, 3}, torch::kDouble), torch::rand({7, 4}, torch::kDouble)});
  EXPECT_TRUE(gc.ok(1e-7, 1e-6)) << gc.summary();
  // and the forward equals index_select / index_add
  at::Tensor x = torch::randn({7, 3}, torch::kDouble), w = torch::rand({7, 4}, torch::kDouble);
  at::Tensor xs = x.index_select(0, d.token_index);
  at::Tensor wa = w.reshape({-1}).index_select(0, d.token_index * 4 + d.expert_index);
  at::Tensor ref = torch::zeros_like(x).index_add(0, d.token_index, xs * wa.unsqueeze(1));
  EXPECT_TRUE(torch::allclose(combine(dispatch(x, d), assignment_weights(w, d), d), ref, 1e-14, 1e-14));
}

TEST(GroupedExperts, EqualsThePerExpertLoopInOutputsAndGradients) {
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (const auto& c : kCases) {
      for (int64_t rows_per_expert : {3, 150}) {  // small blocks run in parallel over experts
        torch::manual_seed(3);
        const int64_t D = 6, F = 5, E = 4;
        std::vector<Expert> experts;
        for (int64_t e = 0; e < E; ++e) {
          experts.push_back(make_expert(c.kind, {D, F, c.activation}));
          experts.back()->to(torch::kDouble);
        }
        const std::vector<int64_t> off = {0, rows_per_expert, rows_per_expert, 2 * rows_per_expert + 1,
                                          3 * rows_per_expert};  // expert 1 has no rows
        at::Tensor xs = torch::randn({off.back(), D}, torch::kDouble).requires_grad_(true);
        std::vector<at::Tensor> params = grouped_params(experts, c.kind);
        at::Tensor y = grouped_experts(xs, off, params, {c.kind, c.activation, torch::kDouble});
        at::Tensor ref = loop_experts(experts, xs, off);
        const std::string what = c.kind + "/" + c.activation + " rows " + std::to_string(rows_per_expert) +
                                 " threads " + std::to_string(threads);
        ASSERT_TRUE(torch::allclose(y, ref, 1e-12, 1e-12)) << what;
        at::Tensor cot = torch::randn_like(ref);
        std::vector<at::Tensor> wrt = {xs};
        wrt.insert(wrt.end(), params.begin(), params.end());
        auto g1 = torch::autograd::grad({(y * cot).sum()}, wrt, {}, true, false, true);
        auto g2 = torch::autograd::grad({(ref * cot).sum()}, wrt, {}, true, false, true);
        for (size_t i = 0; i < wrt.size(); ++i) {
          at::Tensor r = g2[i].defined() ? g2[i] : torch::zeros_like(wrt[i]);  // expert 1's params get no grad
          EXPECT_TRUE(torch::allclose(g1[i], r, 1e-12, 1e-12)) << what << " tensor " << i;
        }
      }
    }
  }
  at::set_num_threads(1);
}

TEST(GroupedExperts, PassGradientCheckInDoublePrecision) {
  for (const auto& c : kCases) {
    if (c.activation == "relu") continue;  // not smooth
    torch::manual_seed(4);
    const int64_t D = 3, F = 4, E = 3;
    const std::vector<int64_t> off = {0, 2, 2, 5};
    const auto names = grouped_param_names(c.kind);
    std::vector<at::Tensor> inputs = {torch::randn({5, D}, torch::kDouble)};
    for (int64_t e = 0; e < E; ++e) {
      auto ex = make_expert(c.kind, {D, F, c.activation});
      ex->to(torch::kDouble);
      auto named = ex->named_parameters(false);
      for (const auto& n : names) inputs.push_back(named[n].detach().clone() + 0.1 * torch::randn_like(named[n]));
    }
    auto fn = [&](const std::vector<at::Tensor>& in) {
      return grouped_experts(in[0], off, std::vector<at::Tensor>(in.begin() + 1, in.end()),
                             {c.kind, c.activation, torch::kDouble});
    };
    auto gc = testutil::gradcheck(fn, inputs);
    EXPECT_TRUE(gc.ok(1e-7, 1e-6)) << c.kind << "/" << c.activation << ": " << gc.summary();
  }
}

TEST(GroupedExperts, Bf16MixedPrecisionIsWithinTwoPercentOfFp32) {
  // Inputs and weights are rounded to bf16 first, so that the fp32 reference sees the numbers
  // the bf16 GEMMs see: what is left is the rounding of the intermediates (and no ReLU flips).
  auto round_bf16 = [](const at::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kFloat); };
  for (const auto& c : kCases) {
    torch::manual_seed(5);
    const int64_t D = 64, F = 96, E = 4;
    std::vector<Expert> experts;
    for (int64_t e = 0; e < E; ++e) {
      experts.push_back(make_expert(c.kind, {D, F, c.activation}));
      torch::NoGradGuard ng;
      for (auto& p : experts.back()->parameters()) p.copy_(round_bf16(p));
    }
    const std::vector<int64_t> off = {0, 40, 90, 91, 160};
    at::Tensor xs = round_bf16(torch::randn({160, D})).requires_grad_(true);
    std::vector<at::Tensor> params = grouped_params(experts, c.kind);
    at::Tensor y = grouped_experts(xs, off, params, {c.kind, c.activation, torch::kBFloat16});
    EXPECT_EQ(y.scalar_type(), torch::kFloat) << "bf16 GEMMs accumulate and return fp32";
    at::Tensor ref = loop_experts(experts, xs, off);
    const std::string what = c.kind + "/" + c.activation;
    EXPECT_LT(rel_err(y, ref), 2e-2) << what;
    at::Tensor cot = torch::randn_like(ref);
    std::vector<at::Tensor> wrt = {xs};
    wrt.insert(wrt.end(), params.begin(), params.end());
    auto g1 = torch::autograd::grad({(y * cot).sum()}, wrt, {}, true);
    auto g2 = torch::autograd::grad({(ref * cot).sum()}, wrt, {}, true);
    for (size_t i = 0; i < wrt.size(); ++i) {
      EXPECT_EQ(g1[i].scalar_type(), torch::kFloat) << "master gradients stay fp32";
      EXPECT_LT(rel_err(g1[i], g2[i]), 2e-2) << what << " tensor " << i;
    }
  }
}

TEST(MoELayer, GroupedKernelEqualsLoopKernelForEveryRouter) {
  for (const auto& router : router_names()) {
    for (std::string expert : {"ffn", "swiglu"}) {
      for (const std::string precision : {"fp32", "bf16"}) {
        config::MoEConfig c;
        c.router = router_choice(router);
        c.experts.kind = expert;
        c.experts.hidden = 24;
        c.experts.n_copy = 1;
        c.experts.n_zero = 1;
        MoELayerOptions o = dynamoe::models::moe_layer_options(c, /*dim=*/16, /*E=*/6);
        torch::manual_seed(6);
        MoELayer loop(o);
        o.precision = precision;
        MoELayer grouped(std::make_shared<MoELayerImpl>(o));
        torch::NoGradGuard copy_weights;
        auto src = loop->named_parameters();
        for (auto& p : grouped->named_parameters()) p.value().copy_(src[p.key()]);
        loop->eval();
        grouped->eval();
        at::Tensor x = torch::randn({40, 16});
        at::Tensor ids = torch::arange(40, torch::kLong);
        const std::string what = router + "/" + expert + "/" + precision;
        {
          at::AutoGradMode on(true);
          at::Tensor x1 = x.clone().requires_grad_(true), x2 = x.clone().requires_grad_(true);
          torch::manual_seed(7);  // the random router draws from the global generator
          MoELayerOutput a = grouped->forward(x1, {}, ids);
          torch::manual_seed(7);
          MoELayerOutput b = loop->forward(x2, {}, ids);
          ASSERT_TRUE(torch::equal(a.routing.mask, b.routing.mask)) << what;
          const double tol = precision == "fp32" ? 1e-5 : 2e-2;
          EXPECT_LT(rel_err(a.y, b.y), tol) << what;
          at::Tensor cot = torch::randn_like(a.y);
          (a.y * cot).sum().backward();
          (b.y * cot).sum().backward();
          EXPECT_LT(rel_err(x1.grad(), x2.grad()), tol) << what;
          auto ga = grouped->named_parameters(), gb = loop->named_parameters();
          for (auto& p : gb) {
            if (!p.value().grad().defined()) continue;
            EXPECT_LT(rel_err(ga[p.key()].grad(), p.value().grad()), tol) << what << " " << p.key();
          }
        }
      }
    }
  }
}

TEST(BufferPool, HandsOutABufferAgainOnlyWhenNothingReferencesIt) {
  buffer_pool_release();
  at::Tensor a = pooled_empty({512, 1024}, at::kFloat);
  const void* pa = a.data_ptr();
  at::Tensor b = pooled_empty({512, 1024}, at::kFloat);
  EXPECT_NE(b.data_ptr(), pa) << "a is still referenced";
  at::Tensor view = a.narrow(0, 0, 1);
  a.reset();
  at::Tensor c = pooled_empty({512, 1024}, at::kFloat);
  EXPECT_NE(c.data_ptr(), pa) << "a view of a is still alive";
  view.reset();
  at::Tensor d = pooled_empty({500, 1024}, at::kFloat);
  EXPECT_EQ(d.data_ptr(), pa) << "a's buffer is free and fits";
  EXPECT_EQ(d.sizes(), (std::vector<int64_t>{500, 1024}));
  at::Tensor e = pooled_empty({512, 1024}, at::kDouble);
  EXPECT_NE(e.data_ptr(), c.data_ptr());
  EXPECT_EQ(e.scalar_type(), at::kDouble);
}
