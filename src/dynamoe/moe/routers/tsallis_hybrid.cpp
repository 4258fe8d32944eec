#include "dynamoe/moe/routers/tsallis_hybrid.h"

#include <torch/torch.h>

#include <cmath>

#include "dynamoe/util/error.h"

namespace dynamoe::moe::functional {

Routing tsallis_hybrid_route(const at::Tensor& logits, const RouterOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "tsallis_hybrid");
  DYNAMOE_CHECK(opt.tsallis_keep_top_k >= 0, "router tsallis_hybrid: keep_top_k must be >= 0, got ",
                opt.tsallis_keep_top_k);
  DYNAMOE_CHECK(opt.tsallis_eps >= 0, "router tsallis_hybrid: eps must be >= 0, got ", opt.tsallis_eps);
  const int64_t n_experts = logits.size(1);
  const double q = opt.tsallis_q;

  at::Tensor p = at::softmax(logits, -1);                                   // [N, E]
  at::Tensor p_sel = ctx.selection_bias.defined() ? at::softmax(selection_logits(logits, ctx), -1) : p.detach();
  auto [sorted, order] = at::sort(p_sel, /*stable=*/true, -1, /*descending=*/true);  // [N, E]
  at::Tensor position = at::arange(n_experts, order.options()).unsqueeze(0);           // [1, E]
  at::Tensor kept = (sorted.cumsum(-1) <= opt.tsallis_top_p).logical_or(position < opt.tsallis_keep_top_k);
  at::Tensor mask = at::zeros_like(kept).scatter(1, order, kept);                      // [N, E] expert order

  at::Tensor h_norm;  // [N]
  if (n_experts == 1) {
    h_norm = at::zeros({logits.size(0)}, p.options());
  } else if (std::abs(q - 1.0) < 1e-9) {
    at::Tensor shannon = -(p * at::log_softmax(logits, -1)).sum(-1);
    h_norm = shannon / std::log(static_cast<double>(n_experts));
  } else {
    at::Tensor h_q = (1.0 - (p + opt.tsallis_eps).pow(q).sum(-1)) / (q - 1.0);
    const double h_max = (1.0 - std::pow(static_cast<double>(n_experts), 1.0 - q)) / (q - 1.0);
    h_norm = h_q / h_max;
  }
  if (opt.tsallis_threshold < 1.0 && q > 0.0) {
    mask = mask.logical_or((h_norm.detach() > opt.tsallis_threshold).unsqueeze(1));
  }

  at::Tensor weights = p.masked_fill(mask.logical_not(), 0);  // [N, E]
  Routing r = make_routing(logits, p, weights, mask);
  r.h_norm = h_norm;
  return r;
}

}  // namespace dynamoe::moe::functional
