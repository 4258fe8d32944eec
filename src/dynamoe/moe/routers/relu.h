#pragma once
// relu router (ReMoE, arXiv 2412.14711; docs/methods.md section 9.3). Shape legend: N tokens, E experts.
//
//   G = ReLU(z);  S = { i : G_i > 0 } (may be empty);  w = G
//   penalty relu_l1 = mean_t sum_i c_i G_{t,i}, added to the aux loss times lambda = state router.lambda;
//     c_i = 1, or E f_i with opt.balance (f_i: expert i's share of the batch's assignments, a constant)
//   after each training step, s = the fraction of zero entries of G seen since the last one:
//     lambda <- lambda * alpha^sign(s* - s),  s* = 1 - k*/E
//
// Routing.probs is softmax(z) (for the load-balance and entropy losses and the metrics). The
// selection bias is ignored: there is no ranking to bias.
#include <ATen/core/Tensor.h>

#include <vector>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the relu router (config: moe.router.* with moe.router.kind = relu).
struct ReluOptions : KindOptionsOf<ReluOptions> {
  double target_k = 2.0;  ///< k*: the mean active experts per token the controller aims at
  double lambda0 = 1e-8;  ///< the regulariser's starting coefficient
  double alpha = 1.2;  ///< lambda's multiplicative step
  bool balance = false;  ///< weight expert i's L1 term by E f_i
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token to the experts with positive logits; w = ReLU(z) [N, E], and the L1
/// penalty with coefficient lambda (ctx.state).
Routing relu_route(const at::Tensor& logits, const ReluOptions& opt, const RouterContext& ctx);
/// The state: lambda = lambda0.
std::vector<RouterStateSpec> relu_state(const ReluOptions& opt, int64_t n_experts);
/// lambda <- lambda * alpha^sign(s* - s) from the zero fraction seen.
void relu_update(const ReluOptions& opt, RouterState& state, const RouterFeedback& seen);

}  // namespace functional
}  // namespace dynamoe::moe
