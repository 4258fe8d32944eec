#pragma once
// top_p router (Huang et al. 2024, arXiv 2403.07652). Shape legend: N tokens, E experts.
//
//   p = softmax(z / T)                                  T = opt.temperature
//   sort p descending: p_(1) >= p_(2) >= ...
//   m = min { j : p_(1) + ... + p_(j) >= top_p }        (the crossing expert is included; m = E
//                                                        if the sum never reaches top_p)
//   m = clamp(m, min_k, max_k')                         max_k' = min(E, top_p_max_k or E,
//                                                        ctx.k_max if > 0); max wins over min
//   S = the m largest p
//   w = p_S (default)  or  p_S / sum_{j in S} p_j (opt.normalize)
//
// dynamoe's choices: ties are broken by lower expert index first; with ctx.selection_bias b,
// the sort and the cumulative sum use softmax((z + b) / T) while w keeps the unbiased p.
#include <ATen/core/Tensor.h>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the top_p router (config: moe.router.* with moe.router.kind = top_p).
struct TopPOptions : KindOptionsOf<TopPOptions> {
  double temperature = 1.0;  ///< p = softmax(z / T)
  double p = 0.4;  ///< cumulative probability to reach
  int64_t min_k = 1;  ///< at least this many experts
  int64_t max_k = 0;  ///< at most this many experts (0: E)
  bool normalize = false;  ///< renormalise the selected weights
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token to the fewest most probable experts whose mass reaches opt.p; weights
/// differentiable w.r.t. logits [N, E].
Routing top_p_route(const at::Tensor& logits, const TopPOptions& opt, const RouterContext& ctx);

/// The top_p rule's active set [N, E] from the selection probabilities p_sel [N, E]: the
/// shortest descending prefix whose cumulative sum reaches top_p, clamped to [min_k, max_k']
/// (max_k' = min(E, max_k or E, k_max if > 0); the maximum wins). Shared with dtop_p.
at::Tensor top_p_mask(const at::Tensor& p_sel, double top_p, int64_t min_k, int64_t max_k, int64_t k_max,
                      const char* router);

}  // namespace functional
}  // namespace dynamoe::moe
