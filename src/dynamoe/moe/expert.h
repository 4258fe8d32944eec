#pragma once
// Experts: [n, D] -> [n, D] (docs/methods.md section 3), built by name.
//   linear    h(x) = A x + b
//   ffn       W2 act(W1 x + b1) + b2
//   swiglu    W2 (silu(W1 x) * (W3 x))
//   zero      0            (MoE++; costs nothing: the layer never runs it)
//   copy      x            (MoE++; no GEMM)
//   constant  a1 x + a2 v, [a1, a2] = softmax(W_c x)  (MoE++)
//   auto e = make_expert("swiglu", {.dim = 64, .hidden = 128});
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

struct ExpertOptions {
  int64_t dim = 0;                 ///< D
  int64_t hidden = 0;              ///< F (ffn, swiglu)
  std::string activation = "gelu"; ///< ffn activation: relu | gelu | silu | tanh
};

class ExpertImpl : public torch::nn::Module {
 public:
  explicit ExpertImpl(std::string kind) : kind_(std::move(kind)) {}
  /// [n, D] -> [n, D]
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  /// FLOPs (2 x multiply-adds of its matrix products) per token it processes.
  virtual int64_t flops_per_token() const = 0;
  /// False for the zero expert, whose output is identically 0 (the layer skips it).
  virtual bool computes() const { return true; }
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};
using Expert = std::shared_ptr<ExpertImpl>;

/// The expert-kind registry: kind -> factory.
Registry<std::function<Expert(const ExpertOptions&)>>& expert_registry();

/// Builds the expert called `kind`; an unknown name is a ConfigError listing valid names.
Expert make_expert(const std::string& kind, const ExpertOptions& opt);
/// Every expert kind, sorted.
std::vector<std::string> expert_names();

}  // namespace dynamoe::moe
