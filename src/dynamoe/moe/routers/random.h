#pragma once
// random router (THOR, stochastic experts): k experts uniformly at random per token, in
// training and in evaluation. Shape legend: N tokens, E experts.
//
//   S = a uniformly random k-subset of the E experts    k = opt.k, clamped to E; drawn as the k
//                                                       smallest of E i.i.d. U(0, 1) (ctx.generator
//                                                       when set)
//   w_{t,i} = 1 / k for i in S                          (a constant: no gradient to the gate)
//   probs = softmax(z)                                  (T = 1; only for the auxiliary losses)
//
// ctx.selection_bias is ignored.
#include <ATen/core/Tensor.h>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the random router (config: moe.router.* with moe.router.kind = random).
struct RandomOptions : KindOptionsOf<RandomOptions> {
  int64_t k = 2;  ///< experts per token
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token to k experts drawn uniformly without replacement, each with weight 1/k.
Routing random_route(const at::Tensor& logits, const RandomOptions& opt, const RouterContext& ctx);

}  // namespace functional
}  // namespace dynamoe::moe
