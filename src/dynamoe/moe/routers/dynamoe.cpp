#include "dynamoe/moe/routers/dynamoe.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include <limits>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void DynamoeOptions::visit(OptionVisitor& v) {
  v.real("temperature", temperature, "g = softmax(z / T)", 0.0, 100.0, true);
  v.real("sigma", sigma, "std of the training noise on g", 0.0);
  v.real("tau", tau, "quantile level of the per-token threshold", 0.0, 1.0);
}

namespace functional {

Routing dynamoe_route(const at::Tensor& logits, const DynamoeOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "dynamoe");
  const double temperature = opt.temperature;
  DYNAMOE_CHECK(temperature > 0, "router dynamoe: temperature must be > 0, got ", temperature);
  DYNAMOE_CHECK(opt.tau >= 0 && opt.tau <= 1, "router dynamoe: tau must be in [0, 1], got ",
                opt.tau);
  DYNAMOE_CHECK(opt.sigma >= 0, "router dynamoe: sigma must be >= 0, got ", opt.sigma);

  at::Tensor g = at::softmax(logits / temperature, -1);  // [N, E]
  at::Tensor noise;                                       // [N, E], a constant
  if (ctx.training && opt.sigma > 0) {
    c10::optional<at::Generator> gen;
    if (ctx.generator) gen = *ctx.generator;
    noise = dist::batch_draw(g.size(0), [&](int64_t rows) {
              return at::randn({rows, g.size(1)}, gen, g.options().requires_grad(false));
            }) * opt.sigma;
    g = g + noise;
  }
  at::Tensor g_sel = g.detach();
  if (ctx.selection_bias.defined()) {
    g_sel = at::softmax(selection_logits(logits, ctx) / temperature, -1);
    if (noise.defined()) g_sel = g_sel + noise;
  }

  // [N, 1]; at::quantile refuses an empty input, so an empty batch takes an empty column.
  at::Tensor t = g_sel.size(0) == 0 ? g_sel.narrow(1, 0, 1)
                                    : at::quantile(g_sel, opt.tau, /*dim=*/-1, /*keepdim=*/true, "linear");
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

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "dynamoe", router_kind<DynamoeOptions>(functional::dynamoe_route, {},
                 [](const DynamoeOptions& o, int64_t e) {
                   // Strict rule g > t, t the tau-quantile of the E values (linear): E - 1 - floor(tau (E - 1)),
                   // barring ties; at least one expert.
                   return std::max<double>(1, static_cast<double>(e) - 1 - std::floor(o.tau * static_cast<double>(e - 1)));
                 }));

}  // namespace dynamoe::moe
