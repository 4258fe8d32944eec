#include "dynamoe/moe/routers/relu.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void ReluOptions::visit(OptionVisitor& v) {
  v.real("target_k", target_k, "k*: mean active experts per token the controller aims at", 0.0, 1e6, true);
  v.real("lambda0", lambda0, "starting coefficient lambda of the L1 regulariser", 0.0);
  v.real("alpha", alpha, "lambda's multiplicative step per training step", 1.0);
  v.flag("balance", balance, "weight expert i's L1 term by E f_i (its share of the assignments)");
}

namespace functional {

Routing relu_route(const at::Tensor& logits, const ReluOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "relu");
  const double lambda = state_value(ctx, "lambda", "relu");
  const int64_t n_experts = logits.size(1);
  at::Tensor G = at::relu(logits);               // [N, E]
  at::Tensor mask = logits.detach() > 0;         // [N, E]
  at::Tensor per_token;                          // [N]
  if (opt.balance) {
    at::Tensor counts = mask.sum(0).to(at::kDouble);  // [E], over the whole batch
    dist::batch_sum_(counts);
    const double total = counts.sum().item<double>();
    const at::Tensor c = total > 0 ? counts * (static_cast<double>(n_experts) / total) : at::zeros_like(counts);
    per_token = (G * c.to(G.scalar_type()).unsqueeze(0)).sum(-1);
  } else {
    per_token = G.sum(-1);
  }
  Routing r = make_routing(logits, at::softmax(logits, -1), G, mask);
  r.penalty = {"relu_l1", per_token, lambda};
  return r;
}

std::vector<RouterStateSpec> relu_state(const ReluOptions& opt, int64_t) { return {{"lambda", opt.lambda0}}; }

void relu_update(const ReluOptions& opt, RouterState& state, const RouterFeedback& seen) {
  if (seen.tokens <= 0 || seen.n_experts <= 0) return;
  const double entries = seen.tokens * static_cast<double>(seen.n_experts);
  const double s = (entries - seen.assignments) / entries;  // the fraction of zero entries of G
  const double target = 1.0 - opt.target_k / static_cast<double>(seen.n_experts);
  const double diff = target - s;
  const int sign = (diff > 0) - (diff < 0);
  at::Tensor& lambda = state.at("lambda");
  // Kept within [1e-30, 1e30] (dynamoe's choice): the state is a float buffer, and a run whose
  // sparsity cannot respond (e.g. a gate without bias on symmetric inputs) must not overflow it.
  const double next = std::clamp(lambda.item<double>() * std::pow(opt.alpha, sign), 1e-30, 1e30);
  at::NoGradGuard no_grad;
  lambda.fill_(next);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "relu",
                 with_controller<ReluOptions>(router_kind<ReluOptions>(functional::relu_route, {}),
                                              functional::relu_state, functional::relu_update));

}  // namespace dynamoe::moe
