#include "dynamoe/moe/routers/top_k.h"

#include <torch/torch.h>

#include <algorithm>

#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void TopKOptions::visit(OptionVisitor& v) {
  v.real("temperature", temperature, "p = softmax(z / T)", 0.0, 100.0, true);
  v.integer("k", k, "experts per token", 1);
  v.flag("normalize", normalize, "w = p_S / sum p_S (Mixtral) instead of p_S (Switch)");
}

namespace functional {

Routing top_k_route(const at::Tensor& logits, const TopKOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "top_k");
  DYNAMOE_CHECK(opt.k >= 1, "router top_k: k must be >= 1, got ", opt.k);
  DYNAMOE_CHECK(opt.temperature > 0, "router top_k: temperature must be > 0, got ", opt.temperature);
  const int64_t k = std::min(opt.k, logits.size(1));

  at::Tensor p = at::softmax(logits / opt.temperature, -1);                  // [N, E]
  // softmax is monotone per row, so the k largest p are the k largest logits.
  at::Tensor order = std::get<1>(at::sort(selection_logits(logits, ctx), /*stable=*/true, -1, /*descending=*/true));
  at::Tensor mask = at::zeros(logits.sizes(), logits.options().dtype(at::kBool))
                        .scatter(1, order.narrow(1, 0, k), true);             // [N, E]
  at::Tensor weights = p.masked_fill(mask.logical_not(), 0);                  // [N, E]
  if (opt.normalize) {
    // The floor only matters when a biased selection picked experts whose p underflowed to 0.
    weights = weights / weights.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
  }
  return make_routing(logits, p, weights, mask);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "top_k", router_kind<TopKOptions>(functional::top_k_route, {},
                 [](const TopKOptions& o, int64_t e) { return static_cast<double>(std::min(o.k, e)); }));

}  // namespace dynamoe::moe
