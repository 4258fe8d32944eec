// One rank of the expert-parallel layer test (tests/test_expert_parallel.cpp starts P of them
// with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set). Every rank builds the single-process
// layer and runs it on the whole batch (the reference), then the expert-parallel layer (this
// rank's experts only) on its rows, and compares outputs, the auxiliary loss, and every
// gradient, in float64 and in float32. Prints one line per case; exits 1 when a difference
// (relative to the reference's largest magnitude, or absolute below 1) exceeds 1e-10 in
// float64 or 1e-5 in float32.
#include <torch/torch.h>

#include <cstdio>
#include <map>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/dist/launch_env.h"
#include "dynamoe/dist/process_group.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/top_k.h"

using namespace dynamoe;

namespace {

struct Case {
  std::string name, router;
  int64_t experts = 8;
  bool idle_last_expert = false;  ///< the gate never picks the last expert: its rank receives no rows
  std::string kernel = "grouped", expert = "ffn";
  int64_t n_copy = 0;
  double capacity_factor = 0;
};

double max_abs(const at::Tensor& t) { return t.numel() ? t.abs().max().item<double>() : 0.0; }

/// |a - b| relative to b's largest magnitude (absolute when that is below 1).
double difference(const at::Tensor& a, const at::Tensor& b) {
  return max_abs((a - b).to(torch::kDouble)) / std::max(1.0, max_abs(b.to(torch::kDouble)));
}

at::Tensor grad_or_zeros(const at::Tensor& p) { return p.grad().defined() ? p.grad() : torch::zeros_like(p); }

double run_case(dist::ProcessGroup& g, const Case& c, torch::Dtype dtype) {
  const int64_t D = 8, N = 26;
  moe::MoELayerOptions o;
  o.dim = D;
  o.n_experts = c.experts;
  o.router = moe::router_choice(c.router);
  if (c.router == "top_k") o.router.as_mutable<moe::TopKOptions>().k = c.idle_last_expert ? 1 : 2;
  o.expert = c.expert;
  o.expert_options = {D, 16, "gelu"};
  o.kernel = c.kernel;
  o.n_copy = c.n_copy;
  o.capacity_factor = c.capacity_factor;
  o.losses.load_balance = 0.01;
  o.losses.z_loss = 0.001;
  if (c.router == "tsallis_hybrid") o.losses.tsallis = 0.5;  // DynMoLE's loss: products of batch means
  torch::manual_seed(1);
  moe::MoELayer ref(o);
  o.expert_group = &g;
  torch::manual_seed(1);
  moe::MoELayer ep(o);
  ref->to(dtype);
  ep->to(dtype);
  torch::manual_seed(3);
  at::Tensor x = torch::randn({N, D}, dtype), G = torch::randn({N, D}, dtype);
  if (c.idle_last_expert) {
    x = x.abs();
    torch::NoGradGuard no_grad;
    for (moe::MoELayer* l : {&ref, &ep}) (*l)->named_parameters()["gate.weight"][c.experts - 1].fill_(-1.0);
  }
  // The reference: one process, the whole batch.
  torch::manual_seed(4);
  moe::MoELayerOutput r = ref->forward(x);
  ((r.y * G).sum() + r.aux_loss).backward();
  // This rank's rows through the expert-parallel layer.
  const int64_t b = N * g.rank() / g.size(), e = N * (g.rank() + 1) / g.size();
  const double share = static_cast<double>(e - b) / N;
  torch::manual_seed(4);
  moe::MoELayerOutput out;
  {
    dist::BatchScope scope(&g, {b, e, N});
    out = ep->forward(x.slice(0, b, e));
  }
  ((out.y * G.slice(0, b, e)).sum() + out.aux_loss * share).backward();
  double worst = difference(out.y, r.y.slice(0, b, e));
  std::vector<at::Tensor> aux{(out.aux_loss * share).detach().reshape({1}).contiguous()};
  g.allreduce_sum_(aux);
  worst = std::max(worst, difference(aux[0], r.aux_loss.reshape({1})));
  auto ref_params = ref->named_parameters();
  for (const auto& p : ep->named_parameters()) {
    at::Tensor grad = grad_or_zeros(p.value()).clone();
    const bool computing_expert =
        p.key().rfind("experts.", 0) == 0 && std::stoll(p.key().substr(8)) < c.experts - c.n_copy;
    if (!computing_expert) {
      std::vector<at::Tensor> one{grad};  // held by every rank: the ranks' parts add up
      g.allreduce_sum_(one);
    }
    worst = std::max(worst, difference(grad, grad_or_zeros(ref_params[p.key()])));
  }
  std::printf("rank %d of %d: %-24s %s rows %2lld..%2lld  experts %lld..%lld  dropped %lld of the batch's  "
              "largest difference %.3g\n", g.rank(), g.size(), c.name.c_str(),
              dtype == torch::kDouble ? "fp64" : "fp32", static_cast<long long>(b),
              static_cast<long long>(e), static_cast<long long>(ep->local_experts().first),
              static_cast<long long>(ep->local_experts().second), static_cast<long long>(r.routing.dropped), worst);
  return worst;
}

}  // namespace

int main() {
  try {
    torch::set_num_threads(1);
    auto g = dist::ProcessGroup::join(dist::launch_env_from_environment(), {30, 30});
    const std::vector<Case> cases = {
        {"top_k", "top_k"},
        {"top_p", "top_p"},
        {"dynamoe (training noise)", "dynamoe"},
        {"tsallis_hybrid", "tsallis_hybrid"},
        {"expert_choice", "expert_choice"},
        {"top_k, loop kernel", "top_k", 8, false, "loop"},
        {"top_k, swiglu + copy", "top_k", 8, false, "grouped", "swiglu", 1},
        {"top_k, an idle rank", "top_k", static_cast<int64_t>(g->size()), true},
        {"top_k, 2 experts", "top_k", 2},  // at P = 4 two ranks hold none of them
        {"top_k, capacity 1.0", "top_k", 8, false, "grouped", "ffn", 0, 1.0},
        {"top_p, capacity 0.5", "top_p", 8, false, "grouped", "ffn", 0, 0.5},
    };
    int failed = 0;
    for (const Case& c : cases) {
      if (!(run_case(*g, c, torch::kDouble) <= 1e-10)) ++failed;
      if (!(run_case(*g, c, torch::kFloat) <= 1e-5)) ++failed;
    }
    g->barrier();
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %s: error: %s\n", std::getenv("RANK"), e.what());
    return 2;
  }
}
