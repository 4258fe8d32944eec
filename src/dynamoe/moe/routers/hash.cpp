#include "dynamoe/moe/routers/hash.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

void HashOptions::visit(OptionVisitor& v) {
  (void)v;
}

namespace functional {

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

Routing hash_route(const at::Tensor& logits, const HashOptions&, const RouterContext& ctx) {
  check_logits(logits, "hash");
  const int64_t n_tokens = logits.size(0);
  const int64_t n_experts = logits.size(1);
  const at::Tensor& ids = ctx.token_ids;
  DYNAMOE_CHECK(ids.defined(), "router hash needs token ids (RouterContext::token_ids [N]), got none");
  DYNAMOE_CHECK(ids.dim() == 1 && ids.size(0) == n_tokens, "router hash: expected token_ids [", n_tokens,
                "], got ", ids.sizes());
  DYNAMOE_CHECK(at::isIntegralType(ids.scalar_type(), /*includeBool=*/false),
                "router hash: expected integer token_ids, got ", ids.scalar_type());

  at::Tensor id64 = ids.to(at::kCPU, at::kLong).contiguous();
  at::Tensor expert = at::empty({n_tokens}, id64.options());  // [N]
  const int64_t* in = id64.data_ptr<int64_t>();
  int64_t* out = expert.data_ptr<int64_t>();
  for (int64_t t = 0; t < n_tokens; ++t) {
    out[t] = static_cast<int64_t>(splitmix64(static_cast<uint64_t>(in[t])) % static_cast<uint64_t>(n_experts));
  }
  at::Tensor mask = at::zeros(logits.sizes(), logits.options().dtype(at::kBool))
                        .scatter(1, expert.to(logits.device()).unsqueeze(1), true);  // [N, E]
  at::Tensor weights = mask.to(logits.scalar_type());
  return make_routing(logits, at::softmax(logits, -1), weights, mask);
}

}  // namespace functional

DYNAMOE_REGISTER(router_registry(), "hash", router_kind<HashOptions>(functional::hash_route, {/*causal=*/true, /*own_capacity=*/false, /*needs_token_ids=*/true},
                 [](const HashOptions&, int64_t) { return 1.0; }));

}  // namespace dynamoe::moe
