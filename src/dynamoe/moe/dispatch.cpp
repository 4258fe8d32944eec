#include "dynamoe/moe/dispatch.h"

#include <ATen/ATen.h>

namespace dynamoe::moe {

Dispatch plan_dispatch(const Routing& r) {
  const int64_t E = r.mask.size(1);
  Dispatch d;
  at::Tensor pairs = at::nonzero(r.mask.t());  // [A, 2] rows (expert, token), sorted by expert then token
  d.expert_index = pairs.select(1, 0).contiguous();
  d.token_index = pairs.select(1, 1).contiguous();
  d.weight = r.weights.reshape({-1}).index_select(0, d.token_index * E + d.expert_index);  // [A]
  at::Tensor counts = at::bincount(d.expert_index, {}, E);                                  // [E]
  d.offsets.assign(E + 1, 0);
  const int64_t* c = counts.data_ptr<int64_t>();
  for (int64_t e = 0; e < E; ++e) d.offsets[e + 1] = d.offsets[e] + c[e];
  return d;
}

at::Tensor dispatch(const at::Tensor& x, const Dispatch& d) { return x.index_select(0, d.token_index); }

at::Tensor combine(const at::Tensor& expert_out, const Dispatch& d, int64_t n_tokens) {
  at::Tensor scaled = expert_out * d.weight.unsqueeze(1).to(expert_out.scalar_type());  // [A, D]
  return at::zeros({n_tokens, expert_out.size(1)}, expert_out.options()).index_add(0, d.token_index, scaled);
}

}  // namespace dynamoe::moe
