#include "dynamoe/moe/routers/dtop_p.h"

#include <torch/torch.h>

#include <algorithm>

#include "dynamoe/moe/routers/top_p.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void DTopPOptions::visit(OptionVisitor& v) {
  v.real("temperature", temperature, "p = softmax(z' / T)", 0.0, 100.0, true);
  v.real("target_k", target_k, "k*: mean active experts per token the controller aims at", 0.0, 1e6, true);
  v.real("p0", p0, "P0: base and starting value of the top-p threshold P", 0.05, 1.0);
  v.real("kp", kp, "proportional gain of the controller", 0.0);
  v.real("ki", ki, "integral gain of the controller", 0.0);
  v.integer("min_k", min_k, "at least this many experts", 1);
  v.integer("max_k", max_k, "at most this many experts (0: E)", 0);
  v.flag("normalize", normalize, "renormalise the selected weights");
  v.flag("normalize_logits", normalize_logits, "z' = gamma (z - mean z) / (std z + 1e-6), gamma learnable (router.gamma)");
}

namespace functional {

Routing dtop_p_route(const at::Tensor& logits, const DTopPOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "dtop_p");
  DYNAMOE_CHECK(opt.temperature > 0, "router dtop_p: temperature must be > 0, got ", opt.temperature);
  const double threshold = state_value(ctx, "P", "dtop_p");
  at::Tensor z = logits;  // [N, E]
  if (opt.normalize_logits) {
    const auto it = ctx.state->find("gamma");
    DYNAMOE_CHECK(it != ctx.state->end() && it->second.defined(),
                  "router dtop_p: normalize_logits needs the learnable scalar router.gamma in its state");
    const at::Tensor centred = logits - logits.mean(-1, /*keepdim=*/true);                          // [N, E]
    // Population std; a row of equal logits (var 0) has centred = 0, and its std is taken as 0
    // with a zero gradient instead of sqrt's infinite one.
    const at::Tensor var = centred.pow(2).mean(-1, /*keepdim=*/true);  // [N, 1]
    const at::Tensor positive = var > 0;
    const at::Tensor std = at::where(positive, at::where(positive, var, at::ones_like(var)).sqrt(), at::zeros_like(var));
    z = it->second.to(logits.scalar_type()) * centred / (std + 1e-6);
  }
  at::Tensor p = at::softmax(z / opt.temperature, -1);  // [N, E]
  at::Tensor p_sel = p.detach();
  if (ctx.selection_bias.defined()) p_sel = at::softmax(selection_logits(z, ctx) / opt.temperature, -1);
  at::Tensor mask = top_p_mask(p_sel, threshold, opt.min_k, opt.max_k, ctx.k_max, "dtop_p");
  at::Tensor weights = p.masked_fill(mask.logical_not(), 0);
  if (opt.normalize) weights = weights / weights.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
  return make_routing(logits, p, weights, mask);
}

std::vector<RouterStateSpec> dtop_p_state(const DTopPOptions& opt, int64_t) {
  std::vector<RouterStateSpec> s = {{"P", opt.p0}, {"I", 0.0}};
  if (opt.normalize_logits) s.push_back({"gamma", 1.0, /*learnable=*/true});
  return s;
}

void dtop_p_update(const DTopPOptions& opt, RouterState& state, const RouterFeedback& seen) {
  if (seen.tokens <= 0 || seen.n_experts <= 0) return;
  const double kbar = seen.assignments / seen.tokens;
  const double e = (opt.target_k - kbar) / static_cast<double>(seen.n_experts);
  at::Tensor &I = state.at("I"), &P = state.at("P");
  const double integral = std::clamp(I.item<double>() + e, -10.0, 10.0);
  const double threshold = std::clamp(opt.p0 + opt.kp * e + opt.ki * integral, 0.05, 1.0);
  at::NoGradGuard no_grad;
  I.fill_(integral);
  P.fill_(threshold);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "dtop_p",
                 with_controller<DTopPOptions>(router_kind<DTopPOptions>(functional::dtop_p_route, {}),
                                               functional::dtop_p_state, functional::dtop_p_update));

}  // namespace dynamoe::moe
