#include "dynamoe/moe/dispatch.h"

#include <torch/torch.h>

#include "dynamoe/moe/row_kernels.h"
#include "dynamoe/util/error.h"

namespace dynamoe::moe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// [N, D] -> [A, D]: row a is x[token_index[a]], cast to `dtype`.
struct DispatchFn : torch::autograd::Function<DispatchFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& token_index,
                               const at::Tensor& token_rows, const at::Tensor& token_offsets, at::ScalarType dtype) {
    at::Tensor xc = x.contiguous();
    at::Tensor xs = at::empty({token_index.numel(), x.size(1)}, x.options().dtype(dtype));  // [A, D]
    kernels::gather_rows(xc, token_index, xs);
    ctx->saved_data["token_rows"] = token_rows;
    ctx->saved_data["token_offsets"] = token_offsets;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    return {xs};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    at::Tensor offsets = ctx->saved_data["token_offsets"].toTensor();
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    at::Tensor g = grad[0].contiguous();
    at::Tensor dx = at::empty({offsets.numel() - 1, g.size(1)}, g.options().dtype(x_dtype));  // [N, D]
    kernels::sum_rows(g, ctx->saved_data["token_rows"].toTensor(), offsets, {}, dx);
    return {dx, {}, {}, {}, {}};
  }
};

/// [A, D], [A] -> [N, D]: y_t = sum of weight_a * out_a over t's rows.
struct CombineFn : torch::autograd::Function<CombineFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& out, const at::Tensor& weight,
                               const at::Tensor& token_index, const at::Tensor& token_rows,
                               const at::Tensor& token_offsets) {
    at::Tensor oc = out.contiguous(), wc = weight.contiguous();
    at::Tensor y = at::empty({token_offsets.numel() - 1, out.size(1)}, out.options().dtype(weight.scalar_type()));
    kernels::sum_rows(oc, token_rows, token_offsets, wc, y);
    ctx->save_for_backward({oc, wc});
    ctx->saved_data["token_index"] = token_index;
    return {y};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &oc = saved[0], &wc = saved[1];
    at::Tensor g = grad[0].contiguous();
    at::Tensor d_out = at::empty_like(oc), d_w = at::empty_like(wc);
    kernels::scale_rows_and_dot(g, ctx->saved_data["token_index"].toTensor(), oc, wc, d_out, d_w);
    return {d_out, d_w, {}, {}, {}};
  }
};

}  // namespace

Dispatch plan_dispatch(const at::Tensor& mask) {
  DYNAMOE_CHECK(mask.dim() == 2 && mask.scalar_type() == at::kBool, "plan_dispatch: expected a bool mask [N, E], got ",
                mask.sizes(), " ", mask.scalar_type());
  at::Tensor m = mask.contiguous();
  const int64_t N = m.size(0), E = m.size(1);
  const bool* mp = m.data_ptr<bool>();
  Dispatch d;
  d.offsets.assign(E + 1, 0);
  at::Tensor token_offsets = at::empty({N + 1}, at::kLong);
  int64_t* toff = token_offsets.data_ptr<int64_t>();
  // counting sort, pass 1: assignments per expert and per token
  toff[0] = 0;
  for (int64_t t = 0; t < N; ++t) {
    int64_t n = 0;
    for (int64_t e = 0; e < E; ++e)
      if (mp[t * E + e]) {
        ++d.offsets[e + 1];
        ++n;
      }
    toff[t + 1] = toff[t] + n;
  }
  for (int64_t e = 0; e < E; ++e) d.offsets[e + 1] += d.offsets[e];
  const int64_t A = d.offsets[E];
  // pass 2: place each assignment at its expert's next row; tokens arrive in ascending order
  d.token_index = at::empty({A}, at::kLong);
  d.expert_index = at::empty({A}, at::kLong);
  d.token_rows = at::empty({A}, at::kLong);
  int64_t* ti = d.token_index.data_ptr<int64_t>();
  int64_t* ei = d.expert_index.data_ptr<int64_t>();
  int64_t* tr = d.token_rows.data_ptr<int64_t>();
  std::vector<int64_t> next(d.offsets.begin(), d.offsets.end() - 1);
  int64_t j = 0;
  for (int64_t t = 0; t < N; ++t)
    for (int64_t e = 0; e < E; ++e)
      if (mp[t * E + e]) {
        const int64_t row = next[e]++;
        ti[row] = t;
        ei[row] = e;
        tr[j++] = row;
      }
  d.token_offsets = std::vector<int64_t>(toff, toff + N + 1);
  d.token_offsets_tensor = token_offsets;
  return d;
}

at::Tensor assignment_weights(const at::Tensor& weights, const Dispatch& d) {
  const int64_t E = weights.size(1);
  return weights.reshape({-1}).index_select(0, d.token_index * E + d.expert_index);  // [A]
}

at::Tensor dispatch(const at::Tensor& x, const Dispatch& d, c10::optional<at::ScalarType> dtype) {
  DYNAMOE_CHECK(x.dim() == 2 && x.size(0) == d.n_tokens(), "dispatch: expected x [", d.n_tokens(), ", D], got ",
                x.sizes());
  return DispatchFn::apply(x, d.token_index, d.token_rows, d.token_offsets_tensor, dtype.value_or(x.scalar_type()))[0];
}

at::Tensor combine(const at::Tensor& expert_out, const at::Tensor& weight, const Dispatch& d) {
  DYNAMOE_CHECK(expert_out.dim() == 2 && expert_out.size(0) == d.size() && weight.numel() == d.size(),
                "combine: expected expert_out [", d.size(), ", D] and weight [", d.size(), "], got ", expert_out.sizes(),
                " and ", weight.sizes());
  return CombineFn::apply(expert_out, weight, d.token_index, d.token_rows, d.token_offsets_tensor)[0];
}

}  // namespace dynamoe::moe
