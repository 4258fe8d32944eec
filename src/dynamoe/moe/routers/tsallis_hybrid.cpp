#include "dynamoe/moe/routers/tsallis_hybrid.h"

#include <torch/torch.h>

#include <cmath>

#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void TsallisHybridOptions::visit(OptionVisitor& v) {
  v.real("q", q, "entropic index q", 0.0);
  v.real("p", p, "top-p mass", 0.0, 1.0);
  v.real("threshold", threshold, "H_norm above which every expert is active", 0.0);
  v.real("eps", eps, "eps in (p + eps)^q", 0.0);
  v.integer("keep_top_k", keep_top_k, "experts always kept", 0);
}

namespace functional {

Routing tsallis_hybrid_route(const at::Tensor& logits, const TsallisHybridOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "tsallis_hybrid");
  DYNAMOE_CHECK(opt.keep_top_k >= 0, "router tsallis_hybrid: keep_top_k must be >= 0, got ",
                opt.keep_top_k);
  DYNAMOE_CHECK(opt.eps >= 0, "router tsallis_hybrid: eps must be >= 0, got ", opt.eps);
  const int64_t n_experts = logits.size(1);
  const double q = opt.q;

  at::Tensor p = at::softmax(logits, -1);                                   // [N, E]
  at::Tensor p_sel = ctx.selection_bias.defined() ? at::softmax(selection_logits(logits, ctx), -1) : p.detach();
  auto [sorted, order] = at::sort(p_sel, /*stable=*/true, -1, /*descending=*/true);  // [N, E]
  at::Tensor position = at::arange(n_experts, order.options()).unsqueeze(0);           // [1, E]
  at::Tensor kept = (sorted.cumsum(-1) <= opt.p).logical_or(position < opt.keep_top_k);
  at::Tensor mask = at::zeros_like(kept).scatter(1, order, kept);                      // [N, E] expert order

  at::Tensor h_norm;  // [N]
  if (n_experts == 1) {
    h_norm = at::zeros({logits.size(0)}, p.options());
  } else if (std::abs(q - 1.0) < 1e-9) {
    at::Tensor shannon = -(p * at::log_softmax(logits, -1)).sum(-1);
    h_norm = shannon / std::log(static_cast<double>(n_experts));
  } else {
    at::Tensor h_q = (1.0 - (p + opt.eps).pow(q).sum(-1)) / (q - 1.0);
    const double h_max = (1.0 - std::pow(static_cast<double>(n_experts), 1.0 - q)) / (q - 1.0);
    h_norm = h_q / h_max;
  }
  if (opt.threshold < 1.0 && q > 0.0) {
    mask = mask.logical_or((h_norm.detach() > opt.threshold).unsqueeze(1));
  }

  at::Tensor weights = p.masked_fill(mask.logical_not(), 0);  // [N, E]
  Routing r = make_routing(logits, p, weights, mask);
  r.h_norm = h_norm;
  return r;
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "tsallis_hybrid", router_kind<TsallisHybridOptions>(functional::tsallis_hybrid_route, {}));

}  // namespace dynamoe::moe
