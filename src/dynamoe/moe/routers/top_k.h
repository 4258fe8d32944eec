#pragma once
// top_k router (Switch, Mixtral). Shape legend: N tokens, E experts.
//
//   p = softmax(z / T)                                  T = opt.temperature
//   S = the k largest p_i                               k = opt.k, clamped to E
//   w = p_S / sum_{j in S} p_j   (opt.normalize, Mixtral)
//   w = p_S                      (!opt.normalize, Switch)
//
// dynamoe's choices: ties are broken by lower expert index first (stable sort); with
// ctx.selection_bias b, S is the k largest z + b while w keeps the unbiased p.
#include <ATen/core/Tensor.h>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the top_k router (config: moe.router.* with moe.router.kind = top_k).
struct TopKOptions : KindOptionsOf<TopKOptions> {
  double temperature = 1.0;  ///< p = softmax(z / T)
  int64_t k = 2;  ///< experts per token
  bool normalize = true;  ///< w = p_S / sum p_S (Mixtral) instead of p_S (Switch)
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token to its k most probable experts; weights differentiable w.r.t. logits [N, E].
Routing top_k_route(const at::Tensor& logits, const TopKOptions& opt, const RouterContext& ctx);

}  // namespace functional
}  // namespace dynamoe::moe
