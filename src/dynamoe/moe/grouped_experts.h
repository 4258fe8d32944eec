#pragma once
// Grouped experts: every expert of one kind applied to its own contiguous block of rows, as
// one autograd node with contiguous per-expert GEMMs written straight into pooled buffers and
// the elementwise work done once over all rows. Shape legend: A rows (assignments sorted by
// expert), D width, F hidden width, E experts.
//   GroupedExpertsOptions o{"swiglu"};
//   at::Tensor out = grouped_experts(xs, d.offsets, params, o);   // [A, D]
// params holds each expert's tensors in order, expert after expert:
//   linear: weight [D, D], bias [D]     ffn: w1 [F, D], b1 [F], w2 [D, F], b2 [D]
//   swiglu: w1 [F, D], w3 [F, D], w2 [D, F]
// Mixed precision: with compute = bfloat16 the GEMMs take bf16 activations and weights (cast
// from the fp32 masters each call, gradients flow back to the masters in fp32) and accumulate in
// fp32; through oneDNN where the CPU has native bf16 support (AVX512-BF16/AMX), else by
// widening to fp32 (same rounding of inputs, no speed gain).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dynamoe::moe {

struct GroupedExpertsOptions {
  std::string kind = "swiglu";           ///< linear | ffn | swiglu
  std::string activation = "gelu";       ///< ffn: relu | gelu | silu | tanh
  at::ScalarType compute = at::kFloat;   ///< GEMM dtype: float32, float64 or bfloat16
};

/// The names of one expert's parameters in the order grouped_experts takes them; an
/// unsupported kind is an error.
std::vector<std::string> grouped_param_names(const std::string& kind);
/// True for the kinds grouped_experts runs (linear, ffn, swiglu).
bool grouped_supports(const std::string& kind);

/// out [A, D]: rows [offsets[e], offsets[e+1]) of xs through expert e; in o.compute dtype, but
/// fp32 when that is bfloat16 (the GEMMs accumulate in fp32 and the result is kept).
/// xs [A, D] (any float dtype; cast to o.compute). Differentiable w.r.t. xs and params.
at::Tensor grouped_experts(const at::Tensor& xs, const std::vector<int64_t>& offsets,
                           const std::vector<at::Tensor>& params, const GroupedExpertsOptions& o);

/// How bf16 GEMMs run on this machine: "onednn" (native) or "fp32-emulated". The environment
/// variable DYNAMOE_BF16_GEMM=native|emulated overrides the CPU check.
std::string bf16_gemm_backend();

}  // namespace dynamoe::moe
