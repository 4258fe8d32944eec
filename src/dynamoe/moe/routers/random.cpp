#include "dynamoe/moe/routers/random.h"

#include <torch/torch.h>

#include <algorithm>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void RandomOptions::visit(OptionVisitor& v) {
  v.integer("k", k, "experts per token", 1);
}

namespace functional {

Routing random_route(const at::Tensor& logits, const RandomOptions& opt, const RouterContext& ctx) {
  check_logits(logits, "random");
  DYNAMOE_CHECK(opt.k >= 1, "router random: k must be >= 1, got ", opt.k);
  const int64_t k = std::min(opt.k, logits.size(1));

  c10::optional<at::Generator> gen;
  if (ctx.generator) gen = *ctx.generator;
  at::Tensor u = dist::batch_draw(logits.size(0), [&](int64_t rows) {  // [N, E]
    return at::rand({rows, logits.size(1)}, gen, logits.options().dtype(at::kDouble).requires_grad(false));
  });
  at::Tensor order = std::get<1>(at::sort(u, /*stable=*/true, -1));
  at::Tensor mask = at::zeros(logits.sizes(), logits.options().dtype(at::kBool))
                        .scatter(1, order.narrow(1, 0, k), true);  // [N, E]
  at::Tensor weights = mask.to(logits.scalar_type()) / static_cast<double>(k);
  return make_routing(logits, at::softmax(logits, -1), weights, mask);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "random", router_kind<RandomOptions>(functional::random_route, {},
                 [](const RandomOptions& o, int64_t e) { return static_cast<double>(std::min(o.k, e)); }));

}  // namespace dynamoe::moe
