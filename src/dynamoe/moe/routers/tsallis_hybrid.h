#pragma once
// tsallis_hybrid router (DynMoLE, arXiv 2504.00661): top-p with a top-k floor, and all experts
// for uncertain tokens. Shape legend: N tokens, E experts.
//
//   p = softmax(z)                                      (T = 1: opt.temperature is not used)
//   sort p descending: p_(1) >= p_(2) >= ...
//   M_(j) = [p_(1) + ... + p_(j) <= top_p] or [j <= keep_top_k]    (the crossing expert is NOT
//                                                       included, unlike the top_p router)
//   H_q = (1 - sum_i (p_i + eps)^q) / (q - 1)           q = opt.q, eps = opt.eps
//   H_max = (1 - E^(1 - q)) / (q - 1)
//   H_norm = H_q / H_max                                (|q - 1| < 1e-9: -sum_i p_i log p_i / log E,
//                                                       exact, without eps; E = 1: H_norm = 0)
//   if H_norm > threshold: M = all experts              (skipped when threshold >= 1 or q <= 0)
//   w = p * M                                           (NOT renormalised)
//
// Routing.h_norm [N] is H_norm, differentiable w.r.t. logits (for the tsallis auxiliary loss).
// With keep_top_k = 0 a token may get no expert. dynamoe's choices: ties go to the lower
// expert index; with ctx.selection_bias b, the top-p/top-k mask comes from softmax(z + b),
// while H_norm and w use the unbiased p.
#include <ATen/core/Tensor.h>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the tsallis_hybrid router (config: moe.router.* with moe.router.kind = tsallis_hybrid).
struct TsallisHybridOptions : KindOptionsOf<TsallisHybridOptions> {
  double q = 1.1;  ///< entropic index q
  double p = 0.75;  ///< top-p mass
  double threshold = 0.9;  ///< H_norm above which every expert is active
  double eps = 1e-5;  ///< eps in (p + eps)^q
  int64_t keep_top_k = 2;  ///< experts always kept
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token with DynMoLE's hybrid rule; weights and h_norm differentiable w.r.t. logits.
Routing tsallis_hybrid_route(const at::Tensor& logits, const TsallisHybridOptions& opt, const RouterContext& ctx);

}  // namespace functional
}  // namespace dynamoe::moe
