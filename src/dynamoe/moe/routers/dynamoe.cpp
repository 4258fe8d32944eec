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
  v.text("scope", scope, "token: each token's own quantile; batch: one threshold per batch (docs/methods.md 9.1)",
         {"token", "batch"});
  v.real("momentum", momentum, "scope batch: update rate m of the running threshold tbar", 0.0, 1.0, true);
}

namespace {

/// The tau-quantile of all values of v (any shape, at least one value), interpolating linearly
/// between order statistics as torch.quantile does. [] of v's dtype
at::Tensor flat_quantile(const at::Tensor& v, double tau) {
  const at::Tensor sorted = std::get<0>(at::sort(v.reshape({-1})));  // [M] ascending
  const int64_t m = sorted.size(0);
  const double h = tau * static_cast<double>(m - 1);
  const int64_t lo = std::min<int64_t>(static_cast<int64_t>(std::floor(h)), m - 1), hi = std::min<int64_t>(lo + 1, m - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

}  // namespace

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

  DYNAMOE_CHECK(opt.scope == "token" || opt.scope == "batch", "router dynamoe: scope must be token or batch, got '",
                opt.scope, "'");
  at::Tensor t;  // [N, 1] or [] (batch scope)
  double batch_t = 0;
  bool has_batch_t = false;
  if (opt.scope == "token") {
    // at::quantile refuses an empty input, so an empty batch takes an empty column.
    t = g_sel.size(0) == 0 ? g_sel.narrow(1, 0, 1)
                           : at::quantile(g_sel, opt.tau, /*dim=*/-1, /*keepdim=*/true, "linear");
  } else if (ctx.training) {
    const at::Tensor all = dist::batch_gather_rows(g_sel.contiguous());  // [N_batch, E]
    if (all.numel() > 0) {
      t = flat_quantile(all, opt.tau);
      batch_t = t.item<double>();
      has_batch_t = true;
    } else {
      t = at::full({}, std::numeric_limits<double>::infinity(), g_sel.options());  // no token: nothing to route
    }
  } else {
    t = at::full({}, state_value(ctx, "tbar", "dynamoe"), g_sel.options());
  }
  at::Tensor mask = g_sel > t;                                                                 // [N, E]
  at::Tensor rank = descending_ranks(g_sel);                                                   // [N, E]
  at::Tensor empty = mask.any(-1, /*keepdim=*/true).logical_not();                            // [N, 1]
  mask = mask.logical_or((rank == 0).logical_and(empty));
  // S is an upper set of g_sel, so "keep the k_max largest" is "rank < k_max".
  if (ctx.k_max > 0) mask = mask.logical_and(rank < ctx.k_max);

  at::Tensor weights =
      at::softmax(g.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity()), -1);  // [N, E]
  Routing r = make_routing(logits, g, weights, mask);
  r.batch_threshold = batch_t;
  r.has_batch_threshold = has_batch_t;
  return r;
}

std::vector<RouterStateSpec> dynamoe_state(const DynamoeOptions& opt, int64_t n_experts) {
  if (opt.scope != "batch") return {};
  return {{"tbar", 1.0 / static_cast<double>(std::max<int64_t>(n_experts, 1))}};
}

void dynamoe_update(const DynamoeOptions& opt, RouterState& state, const RouterFeedback& seen) {
  if (opt.scope != "batch" || seen.thresholds.empty()) return;
  at::Tensor& tbar = state.at("tbar");
  double v = tbar.item<double>();
  for (double t : seen.thresholds) v = (1 - opt.momentum) * v + opt.momentum * t;
  at::NoGradGuard no_grad;
  tbar.fill_(v);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "dynamoe",
                 with_controller<DynamoeOptions>(
                     router_kind<DynamoeOptions>(functional::dynamoe_route, {},
                                                 [](const DynamoeOptions& o, int64_t e) {
                                                   // Scope token, strict rule g > t, t the tau-quantile of the E
                                                   // values (linear): E - 1 - floor(tau (E - 1)), barring ties; at
                                                   // least one expert. Scope batch: it varies.
                                                   if (o.scope == "batch") return -1.0;
                                                   return std::max<double>(1, static_cast<double>(e) - 1 -
                                                                                  std::floor(o.tau * static_cast<double>(e - 1)));
                                                 }),
                     functional::dynamoe_state, functional::dynamoe_update));

}  // namespace dynamoe::moe
