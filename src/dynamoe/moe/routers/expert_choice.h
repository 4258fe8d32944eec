#pragma once
// expert_choice router (Zhou et al. 2022, arXiv 2202.09368): experts pick tokens.
// Shape legend: N tokens, E experts.
//
//   p = softmax(z / T)                                  T = opt.temperature (over experts, per token)
//   C = min(N, max(1, ceil(capacity * N * k / E)))      capacity = opt.capacity, k = opt.k
//   expert i takes the C tokens with the largest p_{t,i}; a token may get 0..E experts
//   w_{t,i} = p_{t,i} for the chosen pairs, 0 elsewhere
//
// Not causal: a token's experts depend on the other tokens of the batch (router_is_causal is
// false). dynamoe's choices: ties go to the lower token index; ctx.selection_bias is ignored
// (the load is balanced by construction); the ceiling forgives a relative rounding error of 1e-9.
#include <ATen/core/Tensor.h>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the expert_choice router (config: moe.router.* with moe.router.kind = expert_choice).
struct ExpertChoiceOptions : KindOptionsOf<ExpertChoiceOptions> {
  double temperature = 1.0;  ///< p = softmax(z / T)
  int64_t k = 2;  ///< mean experts per token: C = ceil(capacity * N * k / E)
  double capacity = 1.0;  ///< capacity factor c of each expert
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// The capacity C of each expert for a batch of n_tokens (see the formula above).
int64_t expert_choice_capacity(const ExpertChoiceOptions& opt, int64_t n_tokens, int64_t n_experts);

/// Lets every expert choose its C most probable tokens; weights differentiable w.r.t. logits [N, E].
Routing expert_choice_route(const at::Tensor& logits, const ExpertChoiceOptions& opt, const RouterContext& ctx);

}  // namespace functional
}  // namespace dynamoe::moe
