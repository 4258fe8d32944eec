#pragma once
// Dispatch and combine: the two halves of sparse expert computation. Shape legend: N tokens,
// E experts, A active (token, expert) assignments, D model width.
//   Dispatch d = plan_dispatch(routing);       // assignments grouped by expert
//   at::Tensor xs = dispatch(x, d);            // [A, D]: each expert's tokens, contiguous
//   ... expert e runs on xs[d.offsets[e] : d.offsets[e+1]] ...
//   at::Tensor y = combine(expert_out, d, N);  // [N, D]: sum_i w_{t,i} * Expert_i(x_t)
// They are separate steps so that an all-to-all can go between them (expert parallelism).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "dynamoe/moe/routing.h"

namespace dynamoe::moe {

struct Dispatch {
  at::Tensor token_index;        ///< [A] int64: token of each assignment, grouped by expert (tokens ascending)
  at::Tensor expert_index;       ///< [A] int64: expert of each assignment (non-decreasing)
  at::Tensor weight;             ///< [A] w_{t,i}, differentiable w.r.t. the routing weights
  std::vector<int64_t> offsets;  ///< [E + 1]: expert e owns assignments [offsets[e], offsets[e+1])
  int64_t count(int64_t e) const { return offsets[e + 1] - offsets[e]; }
};

/// Groups the active assignments of `r.mask` by expert.
Dispatch plan_dispatch(const Routing& r);
/// Gathers the inputs of every assignment: [N, D] -> [A, D].
at::Tensor dispatch(const at::Tensor& x, const Dispatch& d);
/// Scales each assignment's output by its weight and sums per token: [A, D] -> [N, D].
at::Tensor combine(const at::Tensor& expert_out, const Dispatch& d, int64_t n_tokens);

}  // namespace dynamoe::moe
