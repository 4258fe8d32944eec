// The router registry, the helpers shared by the routers, and the capacity limit.
// Shape legend: N tokens, E experts.
#include "dynamoe/moe/routing.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "dynamoe/util/error.h"

namespace dynamoe::moe {

Registry<RouterKind>& router_registry() {
  static Registry<RouterKind> reg("router");
  return reg;
}

Routing route(const std::string& name, const at::Tensor& logits, const KindOptions& opt, const RouterContext& ctx) {
  return router_registry().at(name).route(logits, opt, ctx);
}

KindChoice router_choice(const std::string& name) { return KindChoice(name, router_registry().at(name).defaults()); }

std::vector<std::string> router_names() { return router_registry().names(); }

RouterTraits router_traits(const std::string& name) { return router_registry().at(name).traits; }

bool router_is_causal(const std::string& name) { return router_traits(name).causal; }

std::vector<RouterStateSpec> router_state_specs(const KindChoice& router, int64_t n_experts) {
  const RouterKind& kind = router_registry().at(router.kind());
  if (!kind.state) return {};
  return kind.state(router.options(), n_experts);
}

void update_router_state(const KindChoice& router, RouterState& state, const RouterFeedback& seen) {
  const RouterKind& kind = router_registry().at(router.kind());
  if (!kind.update || seen.empty()) return;
  kind.update(router.options(), state, seen);
}

namespace functional {

void check_logits(const at::Tensor& logits, const char* router) {
  DYNAMOE_CHECK(logits.defined(), "router ", router, ": logits are undefined");
  DYNAMOE_CHECK(logits.dim() == 2, "router ", router, ": expected logits [N, E], got ", logits.dim(),
                " dimensions ", logits.sizes());
  DYNAMOE_CHECK(logits.size(1) >= 1, "router ", router, ": expected at least one expert, got logits ",
                logits.sizes());
  DYNAMOE_CHECK(at::isFloatingType(logits.scalar_type()), "router ", router,
                ": expected floating logits, got ", logits.scalar_type());
}

at::Tensor selection_logits(const at::Tensor& logits, const RouterContext& ctx) {
  at::Tensor z = logits.detach();
  if (!ctx.selection_bias.defined()) return z;
  const at::Tensor& b = ctx.selection_bias;
  DYNAMOE_CHECK(b.dim() == 1 && b.size(0) == z.size(1), "selection_bias: expected [", z.size(1),
                "] (one per expert), got ", b.sizes());
  return z + b.detach().to(z.scalar_type()).unsqueeze(0);  // [N, E]
}

at::Tensor descending_ranks(const at::Tensor& scores) {
  at::Tensor order = std::get<1>(at::sort(scores.detach(), /*stable=*/true, /*dim=*/-1, /*descending=*/true));
  // ranks[order[j]] = j: scatter the positions 0..E-1 back to expert order.   // [N, E]
  at::Tensor positions = at::arange(scores.size(-1), order.options()).expand_as(order);
  return at::empty_like(order).scatter_(-1, order, positions);
}

Routing make_routing(at::Tensor logits, at::Tensor probs, at::Tensor weights, at::Tensor mask) {
  Routing r;
  r.assignments_before_capacity = mask.sum().item<int64_t>();
  r.logits = std::move(logits);
  r.probs = std::move(probs);
  r.weights = std::move(weights);
  r.mask = std::move(mask);
  return r;
}

double state_value(const RouterContext& ctx, const std::string& name, const char* router) {
  DYNAMOE_CHECK(ctx.state != nullptr, "router ", router, ": needs its controller state (router.", name,
                "), and the caller gave none");
  const auto it = ctx.state->find(name);
  DYNAMOE_CHECK(it != ctx.state->end() && it->second.defined() && it->second.numel() == 1, "router ", router,
                ": its controller state has no scalar router.", name);
  return it->second.item<double>();
}

}  // namespace functional

void apply_capacity(Routing& r, int64_t capacity) {
  DYNAMOE_CHECK(capacity >= 0, "expert capacity must be >= 0, got ", capacity);
  DYNAMOE_CHECK(r.mask.defined() && r.weights.defined() && r.mask.dim() == 2,
                "apply_capacity: the routing has no [N, E] mask/weights");
  const int64_t n = r.mask.size(0);
  if (capacity >= n) return;  // no expert can have more than N assignments
  // Rank each expert's tokens by descending weight (inactive pairs last, ties: lower token
  // first), then keep the first `capacity`.
  at::Tensor w = r.weights.detach().to(at::kDouble);
  at::Tensor score = w.masked_fill(r.mask.logical_not(), -std::numeric_limits<double>::infinity());
  at::Tensor rank = functional::descending_ranks(score.t().contiguous()).t();  // [N, E]
  at::Tensor keep = r.mask.logical_and(rank < capacity);                        // [N, E]
  const int64_t before = r.mask.sum().item<int64_t>();
  const int64_t after = keep.sum().item<int64_t>();
  r.dropped += before - after;
  r.weights = r.weights.masked_fill(keep.logical_not(), 0);
  r.mask = keep;
}

int64_t capacity_for(double capacity_factor, int64_t n_tokens, double k_mean, int64_t n_experts) {
  DYNAMOE_CHECK(n_tokens >= 0, "capacity_for: n_tokens must be >= 0, got ", n_tokens);
  DYNAMOE_CHECK(n_experts >= 1, "capacity_for: n_experts must be >= 1, got ", n_experts);
  DYNAMOE_CHECK(k_mean >= 0, "capacity_for: k_mean must be >= 0, got ", k_mean);
  if (capacity_factor <= 0) return n_tokens;  // dropless
  const double x = capacity_factor * static_cast<double>(n_tokens) * k_mean / static_cast<double>(n_experts);
  const int64_t c = static_cast<int64_t>(std::ceil(x * (1.0 - 1e-9)));
  return std::max<int64_t>(c, 1);
}

}  // namespace dynamoe::moe
