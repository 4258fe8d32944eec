#pragma once
// dtop_p router (DTop-p, arXiv 2512.13996; the controller's exact form is dynamoe's, docs/methods.md
// section 9.2): top_p with a threshold P that a PI controller moves toward a target mean of active
// experts k*. Shape legend: N tokens, E experts.
//
//   z' = z, or gamma (z - mean_i z) / (std_i z + 1e-6)   opt.normalize_logits; std over the E logits
//                                                        (population); gamma = state router.gamma (learnable, 1)
//   p = softmax(z' / T)                                  T = opt.temperature
//   S = top_p_mask(p, P = state router.P, min_k, max_k)  (routers/top_p.h; selection bias as top_p)
//   w = p_S, or p_S / sum p_S (opt.normalize)
//   after each training step, kbar = the mean active experts per token seen since the last one:
//     e = (k* - kbar) / E;  I <- clamp(I + e, -10, 10);  P <- clamp(P0 + Kp e + Ki I, 0.05, 1)
#include <ATen/core/Tensor.h>

#include <vector>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the dtop_p router (config: moe.router.* with moe.router.kind = dtop_p).
struct DTopPOptions : KindOptionsOf<DTopPOptions> {
  double temperature = 1.0;  ///< p = softmax(z' / T)
  double target_k = 2.0;  ///< k*: the mean active experts per token the controller aims at
  double p0 = 0.5;  ///< P0: the threshold's base value (and starting value)
  double kp = 1.0;  ///< proportional gain
  double ki = 0.1;  ///< integral gain
  int64_t min_k = 1;  ///< at least this many experts
  int64_t max_k = 0;  ///< at most this many experts (0: E)
  bool normalize = false;  ///< renormalise the selected weights
  bool normalize_logits = false;  ///< z' = gamma (z - mean z) / (std z + 1e-6), gamma learnable
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token with the top_p rule at the controlled threshold P (ctx.state: P, I, and
/// gamma with normalize_logits); weights differentiable w.r.t. logits [N, E] and gamma.
Routing dtop_p_route(const at::Tensor& logits, const DTopPOptions& opt, const RouterContext& ctx);
/// The state: P = P0, I = 0, and the learnable gamma = 1 with normalize_logits.
std::vector<RouterStateSpec> dtop_p_state(const DTopPOptions& opt, int64_t n_experts);
/// The PI update of P and I from the mean active experts seen.
void dtop_p_update(const DTopPOptions& opt, RouterState& state, const RouterFeedback& seen);

}  // namespace functional
}  // namespace dynamoe::moe
