#pragma once
// threshold router. Shape legend: N tokens, E experts.
//
//   p = softmax(z / T)                                  T = opt.temperature
//   S = { i : p_i >= theta }, or { argmax p } when that is empty
//   w = p_S (default)  or  p_S / sum_{j in S} p_j (opt.normalize)
//
// dynamoe's choices: argmax ties go to the lower expert index; with ctx.selection_bias b, the
// comparison (and the argmax) use softmax((z + b) / T) while w keeps the unbiased p.
#include <ATen/core/Tensor.h>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the threshold router (config: moe.router.* with moe.router.kind = threshold).
struct ThresholdOptions : KindOptionsOf<ThresholdOptions> {
  double temperature = 1.0;  ///< p = softmax(z / T)
  double theta = 0.1;  ///< S = {i : p_i >= theta}
  bool normalize = false;  ///< renormalise the selected weights
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// Routes every token to the experts whose probability reaches opt.theta (at least one); weights
/// differentiable w.r.t. logits [N, E].
Routing threshold_route(const at::Tensor& logits, const ThresholdOptions& opt, const RouterContext& ctx);

}  // namespace functional
}  // namespace dynamoe::moe
