#include "dynamoe/moe/routers/threshold.h"

#include <torch/torch.h>

#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void ThresholdOptions::visit(OptionVisitor& v) {
  v.real("temperature", temperature, "p = softmax(z / T)", 0.0, 100.0, true);
  v.real("theta", theta, "S = {i : p_i >= theta}", 0.0, 1.0);
  v.flag("normalize", normalize, "renormalise the selected weights");
}

namespace functional {

Routing threshold_route(const at::Tensor& logits, const ThresholdOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "threshold");
  DYNAMOE_CHECK(opt.temperature > 0, "router threshold: temperature must be > 0, got ", opt.temperature);

  at::Tensor p = at::softmax(logits / opt.temperature, -1);                          // [N, E]
  at::Tensor p_sel = at::softmax(selection_logits(logits, ctx) / opt.temperature, -1);  // [N, E]
  at::Tensor mask = p_sel >= opt.theta;                                               // [N, E]
  at::Tensor empty = mask.any(-1, /*keepdim=*/true).logical_not();                    // [N, 1]
  at::Tensor top1 = descending_ranks(p_sel) == 0;                                     // [N, E] argmax
  mask = mask.logical_or(top1.logical_and(empty));
  at::Tensor weights = p.masked_fill(mask.logical_not(), 0);
  if (opt.normalize) weights = weights / weights.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
  return make_routing(logits, p, weights, mask);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "threshold", router_kind<ThresholdOptions>(functional::threshold_route, {}));

}  // namespace dynamoe::moe
