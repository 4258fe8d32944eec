#pragma once
// Dispatch and combine: the two halves of sparse expert computation. Shape legend: N tokens,
// E experts, A active (token, expert) assignments, D model width.
//   Dispatch d = plan_dispatch(routing.mask);         // assignments grouped by expert
//   at::Tensor xs = dispatch(x, d);                    // [A, D]: each expert's tokens, contiguous
//   ... expert e runs on xs[d.offsets[e] : d.offsets[e+1]] ...
//   at::Tensor y = combine(expert_out, weight, d);     // [N, D]: sum_i w_{t,i} * Expert_i(x_t)
// They are separate steps so that an all-to-all can go between them (expert parallelism).
//
// The plan is one stable counting sort of the assignments by expert (tokens ascending within an
// expert) plus its inverse grouped by token, so that both directions are gathers: dispatch's
// backward and combine's forward sum each token's rows without atomics or a serial index_add,
// and both run in parallel over tokens.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace dynamoe::moe {

struct Dispatch {
  at::Tensor token_index;             ///< [A] int64: token of each assignment, grouped by expert (tokens ascending)
  at::Tensor expert_index;            ///< [A] int64: expert of each assignment (non-decreasing)
  at::Tensor token_rows;              ///< [A] int64: the rows above grouped by token (experts ascending)
  std::vector<int64_t> offsets;       ///< [E + 1]: expert e owns rows [offsets[e], offsets[e+1])
  std::vector<int64_t> token_offsets; ///< [N + 1]: token t owns token_rows[token_offsets[t] .. token_offsets[t+1])
  at::Tensor token_offsets_tensor;    ///< the same, as an int64 tensor (for the kernels)
  int64_t n_tokens() const { return static_cast<int64_t>(token_offsets.size()) - 1; }
  int64_t n_experts() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t count(int64_t e) const { return offsets[e + 1] - offsets[e]; }
  int64_t size() const { return offsets.back(); }  ///< A
};

/// Groups the active assignments of `mask` [N, E] (bool) by expert.
Dispatch plan_dispatch(const at::Tensor& mask);
/// The routing weight of every assignment, [N, E] -> [A], differentiable.
at::Tensor assignment_weights(const at::Tensor& weights, const Dispatch& d);
/// Gathers the inputs of every assignment, [N, D] -> [A, D], cast to `dtype` (default: x's).
/// Differentiable; its backward sums each token's rows in x's dtype.
at::Tensor dispatch(const at::Tensor& x, const Dispatch& d, c10::optional<at::ScalarType> dtype = c10::nullopt);
/// y_t = sum over t's assignments a of weight_a * expert_out_a: [A, D], [A] -> [N, D] in weight's
/// dtype (expert_out may be lower precision). Differentiable in both inputs.
at::Tensor combine(const at::Tensor& expert_out, const at::Tensor& weight, const Dispatch& d);

}  // namespace dynamoe::moe
