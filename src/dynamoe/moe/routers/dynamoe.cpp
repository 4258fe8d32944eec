#include "dynamoe/moe/routers/dynamoe.h"

#include <torch/torch.h>

#include <limits>

#include "dynamoe/util/error.h"

namespace dynamoe::moe::functional {

Routing dynamoe_route(const at::Tensor& logits, const RouterOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "dynamoe");
  const double temperature = opt.dynamoe_temperature;
  DYNAMOE_CHECK(temperature > 0, "router dynamoe: temperature must be > 0, got ", temperature);
  DYNAMOE_CHECK(opt.dynamoe_tau >= 0 && opt.dynamoe_tau <= 1, "router dynamoe: tau must be in [0, 1], got ",
                opt.dynamoe_tau);
  DYNAMOE_CHECK(opt.dynamoe_sigma >= 0, "router dynamoe: sigma must be >= 0, got ", opt.dynamoe_sigma);

  at::Tensor g = at::softmax(logits / temperature, -1);  // [N, E]
  at::Tensor noise;                                       // [N, E], a constant
  if (ctx.training && opt.dynamoe_sigma > 0) {
    c10::optional<at::Generator> gen;
    if (ctx.generator) gen = *ctx.generator;
    noise = at::randn(g.sizes(), gen, g.options().requires_grad(false)) * opt.dynamoe_sigma;
    g = g + noise;
  }
  at::Tensor g_sel = g.detach();
  if (ctx.selection_bias.defined()) {
    g_sel = at::softmax(selection_logits(logits, ctx) / temperature, -1);
    if (noise.defined()) g_sel = g_sel + noise;
  }

  // [N, 1]; at::quantile refuses an empty input, so an empty batch takes an empty column.
  at::Tensor t = g_sel.size(0) == 0 ? g_sel.narrow(1, 0, 1)
                                    : at::quantile(g_sel, opt.dynamoe_tau, /*dim=*/-1, /*keepdim=*/true, "linear");
  at::Tensor mask = g_sel > t;                                                                 // [N, E]
  at::Tensor rank = descending_ranks(g_sel);                                                   // [N, E]
  at::Tensor empty = mask.any(-1, /*keepdim=*/true).logical_not();                            // [N, 1]
  mask = mask.logical_or((rank == 0).logical_and(empty));
  // S is an upper set of g_sel, so "keep the k_max largest" is "rank < k_max".
  if (ctx.k_max > 0) mask = mask.logical_and(rank < ctx.k_max);

  at::Tensor weights =
      at::softmax(g.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity()), -1);  // [N, E]
  return make_routing(logits, g, weights, mask);
}

}  // namespace dynamoe::moe::functional
