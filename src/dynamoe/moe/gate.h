#pragma once
// Gates: token x [N, D] -> logits z [N, E] (docs/methods.md section 1), built by name.
//   linear                z = W x (+ b)
//   quadratic_polynomial  z_i = x^T A_i x + b_i^T x + c_i            (QGMoE)
//   quadratic_monomial    z_i = x^T A_i x + c_i                      (QGMoE)
//   mlp                   z = W2 tanh(W1 x), W1: D -> h*E            (MoE++)
// Quadratic gates hold A [E, D, D], or with rank r > 0 the factors P, Q [E, r, D] so that
// A_i = P_i^T Q_i and x^T A_i x = (P_i x) . (Q_i x).
//   auto g = make_gate("quadratic_monomial", {.dim = 64, .n_experts = 8});
//   at::Tensor z = g->forward(x);  // [N, 8]
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/util/options.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

struct GateOptions {
  int64_t dim = 0;        ///< D
  int64_t n_experts = 0;  ///< E
  bool bias = false;      ///< linear gate bias
  int64_t rank = 0;       ///< quadratic gates: 0 full A, else factors of rank r
  int64_t mlp_mult = 8;   ///< mlp gate hidden width = mlp_mult * E
};

/// The config-facing options of each gate kind (moe.gate.* with moe.gate.kind = <kind>).
struct LinearGateOptions : KindOptionsOf<LinearGateOptions> {
  bool bias = false;  ///< add a bias b to W x
  void visit(OptionVisitor& v) override;
};
struct QuadraticGateOptions : KindOptionsOf<QuadraticGateOptions> {
  int64_t rank = 0;   ///< rank r of A_i = P_i^T Q_i (0: full D x D)
  void visit(OptionVisitor& v) override;
};
struct MLPGateOptions : KindOptionsOf<MLPGateOptions> {
  int64_t mult = 8;   ///< hidden width = mult * E
  void visit(OptionVisitor& v) override;
};

/// A gate module: parameters registered under the names documented in gate.cpp.
class GateImpl : public torch::nn::Module {
 public:
  /// [N, D] -> [N, E]
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  /// Multiply-add FLOPs (x2) per token.
  virtual int64_t flops_per_token() const = 0;
};
using Gate = std::shared_ptr<GateImpl>;

/// A registered gate: its config-facing options and how they fill GateOptions, and its factory.
struct GateKind {
  std::function<std::shared_ptr<KindOptions>()> defaults;
  std::function<void(const KindOptions&, GateOptions&)> configure;
  std::function<Gate(const GateOptions&)> make;
};
/// The gate registry.
Registry<GateKind>& gate_registry();

/// Builds the gate called `name`; an unknown name is a ConfigError listing valid names.
Gate make_gate(const std::string& name, const GateOptions& opt);
/// Builds the gate of `choice` (kind and its options) for dim D and E experts.
Gate make_gate(const KindChoice& choice, int64_t dim, int64_t n_experts);
/// The gate called `name` with its default options.
KindChoice gate_choice(const std::string& name);
/// Every gate name, sorted.
std::vector<std::string> gate_names();

}  // namespace dynamoe::moe
