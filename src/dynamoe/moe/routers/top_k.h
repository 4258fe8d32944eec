#pragma once
// top_k router (Switch, Mixtral). Shape legend: N tokens, E experts.
//
//   p = softmax(z / T)                                  T = opt.temperature
//   S = the k largest p_i                               k = opt.k, clamped to E
//   w = p_S / sum_{j in S} p_j   (opt.top_k_normalize, Mixtral)
//   w = p_S                      (!opt.top_k_normalize, Switch)
//
// dynamoe's choices: ties are broken by lower expert index first (stable sort); with
// ctx.selection_bias b, S is the k largest z + b while w keeps the unbiased p.
#include <ATen/core/Tensor.h>

#include "dynamoe/moe/routing.h"

namespace dynamoe::moe::functional {

/// Routes every token to its k most probable experts; weights differentiable w.r.t. logits [N, E].
Routing top_k_route(const at::Tensor& logits, const RouterOptions& opt, const RouterContext& ctx);

}  // namespace dynamoe::moe::functional
