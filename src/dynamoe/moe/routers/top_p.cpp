#include "dynamoe/moe/routers/top_p.h"

#include <torch/torch.h>

#include <algorithm>

#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void TopPOptions::visit(OptionVisitor& v) {
  v.real("temperature", temperature, "p = softmax(z / T)", 0.0, 100.0, true);
  v.real("p", p, "cumulative probability to reach", 0.0, 1.0, true);
  v.integer("min_k", min_k, "at least this many experts", 1);
  v.integer("max_k", max_k, "at most this many experts (0: E)", 0);
  v.flag("normalize", normalize, "renormalise the selected weights");
}

namespace functional {

at::Tensor top_p_mask(const at::Tensor& p_sel, double top_p, int64_t min_k, int64_t max_k, int64_t k_max,
                      const char* router) {
  DYNAMOE_CHECK(min_k >= 0 && max_k >= 0, "router ", router, ": min_k and max_k must be >= 0, got ", min_k, " and ",
                max_k);
  const int64_t n_experts = p_sel.size(1);
  max_k = max_k == 0 ? n_experts : std::min(max_k, n_experts);
  if (k_max > 0) max_k = std::min(max_k, k_max);
  min_k = std::min(std::max<int64_t>(min_k, 1), max_k);
  auto [sorted, order] = at::sort(p_sel.detach(), /*stable=*/true, -1, /*descending=*/true);  // [N, E]
  // Positions whose cumulative sum is still below top_p form a prefix; the next one crosses.
  at::Tensor m = (sorted.cumsum(-1) < top_p).sum(-1, /*keepdim=*/true) + 1;  // [N, 1]
  m = m.clamp_min(min_k).clamp_max(max_k);
  at::Tensor in_prefix = at::arange(n_experts, order.options()).unsqueeze(0) < m;  // [N, E] sorted order
  return at::zeros_like(in_prefix).scatter(1, order, in_prefix);                    // [N, E] expert order
}

Routing top_p_route(const at::Tensor& logits, const TopPOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "top_p");
  DYNAMOE_CHECK(opt.temperature > 0, "router top_p: temperature must be > 0, got ", opt.temperature);
  at::Tensor p = at::softmax(logits / opt.temperature, -1);                          // [N, E]
  at::Tensor p_sel = at::softmax(selection_logits(logits, ctx) / opt.temperature, -1);  // [N, E]
  at::Tensor mask = top_p_mask(p_sel, opt.p, opt.min_k, opt.max_k, ctx.k_max, "top_p");
  at::Tensor weights = p.masked_fill(mask.logical_not(), 0);
  if (opt.normalize) weights = weights / weights.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
  return make_routing(logits, p, weights, mask);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "top_p", router_kind<TopPOptions>(functional::top_p_route, {}));

}  // namespace dynamoe::moe
