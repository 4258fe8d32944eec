#pragma once
// dynamoe router (DynaMoE, arXiv 2603.01697): a per-token quantile threshold.
// Shape legend: N tokens, E experts.
//
//   g = softmax(z / T)                                  T = opt.temperature (0.5)
//   g = g + sigma * eps, eps ~ N(0, 1)                  training only; sigma = opt.sigma,
//                                                       drawn from ctx.generator when set
//   t = quantile_tau(g_1..g_E)                          tau = opt.tau; linear interpolation
//                                                       between order statistics (torch.quantile)
//   S = { i : g_i > t }, or { argmax g } when empty; then at most ctx.k_max (if > 0), keeping
//       the largest g
//   w_i = exp(g_i) / sum_{j in S} exp(g_j) for i in S, 0 elsewhere
//
// With opt.scope = "batch" (docs/methods.md section 9.1) t is one threshold for the whole batch:
// in training the tau-quantile of all N*E selection values of the batch (every process's rows
// under data parallelism), in evaluation the running threshold tbar (state router.tbar,
// starting at 1/E), updated after each training step from each training forward's t:
// tbar <- (1 - m) tbar + m t, m = opt.momentum.
//
// Routing.probs is g (with its noise). The noise is a constant: gradients flow from w to z
// through g. dynamoe's choices: ties (argmax, the k_max cut) go to the lower expert index; with
// ctx.selection_bias b, t and S come from softmax((z + b) / T) + the same noise, while w uses
// the unbiased g.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the dynamoe router (config: moe.router.* with moe.router.kind = dynamoe).
struct DynamoeOptions : KindOptionsOf<DynamoeOptions> {
  double temperature = 0.5;  ///< g = softmax(z / T)
  double sigma = 0.1;  ///< std of the training noise on g
  double tau = 0.5;  ///< quantile level of the per-token threshold
  std::string scope = "token";  ///< token: each token's own quantile; batch: one threshold per batch
  double momentum = 0.01;  ///< scope batch: the running threshold's update rate m
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token to the experts above its own tau-quantile of g; weights differentiable
/// w.r.t. logits [N, E].
Routing dynamoe_route(const at::Tensor& logits, const DynamoeOptions& opt, const RouterContext& ctx);
/// Scope batch: the state {tbar = 1/E}; scope token: none.
std::vector<RouterStateSpec> dynamoe_state(const DynamoeOptions& opt, int64_t n_experts);
/// Scope batch: tbar <- (1 - m) tbar + m t for each training forward's t, in order.
void dynamoe_update(const DynamoeOptions& opt, RouterState& state, const RouterFeedback& seen);

}  // namespace functional
}  // namespace dynamoe::moe
