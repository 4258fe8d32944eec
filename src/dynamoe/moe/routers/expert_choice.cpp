#include "dynamoe/moe/routers/expert_choice.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void ExpertChoiceOptions::visit(OptionVisitor& v) {
  v.real("temperature", temperature, "p = softmax(z / T)", 0.0, 100.0, true);
  v.integer("k", k, "mean experts per token: C = ceil(capacity * N * k / E)", 1);
  v.real("capacity", capacity, "capacity factor c of each expert", 0.0, 1e6, true);
}

namespace functional {

int64_t expert_choice_capacity(const ExpertChoiceOptions& opt, int64_t n_tokens, int64_t n_experts) {
  DYNAMOE_CHECK(opt.capacity > 0, "router expert_choice: capacity must be > 0, got ",
                opt.capacity);
  DYNAMOE_CHECK(opt.k >= 1, "router expert_choice: k must be >= 1, got ", opt.k);
  const double x = opt.capacity * static_cast<double>(n_tokens) * static_cast<double>(opt.k) /
                   static_cast<double>(n_experts);
  const int64_t c = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(x * (1.0 - 1e-9))));
  return std::min(c, n_tokens);
}

Routing expert_choice_route(const at::Tensor& logits, const ExpertChoiceOptions& opt, const RouterContext&) {
  check_logits(logits, "expert_choice");
  DYNAMOE_CHECK(opt.temperature > 0, "router expert_choice: temperature must be > 0, got ", opt.temperature);
  at::Tensor p = at::softmax(logits / opt.temperature, -1);  // [N, E]
  // Each expert picks from the whole batch, also when it is split over processes
  // (dist::BatchScope): the probabilities of every rank's tokens are gathered in rank order.
  const at::Tensor all = dist::batch_gather_rows(p.detach());  // [N_batch, E]
  const int64_t capacity = expert_choice_capacity(opt, all.size(0), all.size(1));
  // Each column's tokens by descending p (stable: lower token first on ties).
  at::Tensor order = std::get<1>(at::sort(all, /*stable=*/true, /*dim=*/0, /*descending=*/true));  // [N_batch, E]
  at::Tensor mask = at::zeros(all.sizes(), p.options().dtype(at::kBool))
                        .scatter(0, order.narrow(0, 0, capacity), true);  // [N_batch, E]
  if (dist::batch_group()) mask = mask.narrow(0, dist::batch_row_offset(p.size(0)), p.size(0)).contiguous();
  at::Tensor weights = p.masked_fill(mask.logical_not(), 0);
  return make_routing(logits, p, weights, mask);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "expert_choice", router_kind<ExpertChoiceOptions>(functional::expert_choice_route, {/*causal=*/false, /*own_capacity=*/true}));

}  // namespace dynamoe::moe
