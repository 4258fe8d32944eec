#include "dynamoe/moe/gate.h"

#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <map>

#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {
namespace {

/// z = W x (+ b). Parameters: weight [E, D], bias [E].
class LinearGate : public GateImpl {
 public:
  explicit LinearGate(const GateOptions& o) : o_(o) {
    weight_ = register_parameter("weight", torch::randn({o.n_experts, o.dim}) / std::sqrt(double(o.dim)));
    if (o.bias) bias_ = register_parameter("bias", torch::zeros({o.n_experts}));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return bias_.defined() ? torch::addmm(bias_, x, weight_.t()) : x.mm(weight_.t());  // [N, E]
  }
  int64_t flops_per_token() const override { return 2 * o_.dim * o_.n_experts; }

 private:
  GateOptions o_;
  at::Tensor weight_, bias_;
};

/// z_i = x^T A_i x (+ b_i^T x) + c_i. Parameters: A [E, D, D] or P, Q [E, r, D]; b [E, D]
/// (polynomial only); c [E]. A is initialised so that x^T A_i x has unit scale for unit-variance x.
class QuadraticGate : public GateImpl {
 public:
  QuadraticGate(const GateOptions& o, bool polynomial) : o_(o) {
    const int64_t E = o.n_experts, D = o.dim;
    if (o.rank > 0) {
      const double s = 1.0 / std::sqrt(D * std::sqrt(double(o.rank)));
      P_ = register_parameter("P", torch::randn({E, o.rank, D}) * s);
      Q_ = register_parameter("Q", torch::randn({E, o.rank, D}) * s);
    } else {
      A_ = register_parameter("A", torch::randn({E, D, D}) / double(D));
    }
    if (polynomial) b_ = register_parameter("b", torch::randn({E, D}) / std::sqrt(double(D)));
    c_ = register_parameter("c", torch::zeros({E}));
  }
  at::Tensor forward(const at::Tensor& x) override {
    const int64_t N = x.size(0), E = o_.n_experts, D = o_.dim;
    at::Tensor quad;
    if (A_.defined()) {
      at::Tensor xa = x.mm(A_.permute({1, 0, 2}).reshape({D, E * D})).view({N, E, D});  // [N, E, D]: (x^T A_i)
      quad = (xa * x.unsqueeze(1)).sum(-1);                                               // [N, E]
    } else {
      const int64_t r = o_.rank;
      at::Tensor px = x.mm(P_.reshape({E * r, D}).t()).view({N, E, r});  // [N, E, r]
      at::Tensor qx = x.mm(Q_.reshape({E * r, D}).t()).view({N, E, r});  // [N, E, r]
      quad = (px * qx).sum(-1);                                           // [N, E]
    }
    at::Tensor z = quad + c_;
    if (b_.defined()) z = z + x.mm(b_.t());  // [N, E]
    return z;
  }
  int64_t flops_per_token() const override {
    const int64_t E = o_.n_experts, D = o_.dim;
    int64_t f = A_.defined() ? 2 * E * D * D + 2 * E * D : 4 * E * o_.rank * D + 2 * E * o_.rank;
    return f + (b_.defined() ? 2 * E * D : 0);
  }

 private:
  GateOptions o_;
  at::Tensor A_, P_, Q_, b_, c_;
};

/// z = W2 tanh(W1 x). Parameters: w1 [h*E, D], w2 [E, h*E].
class MLPGate : public GateImpl {
 public:
  explicit MLPGate(const GateOptions& o) : o_(o) {
    const int64_t H = o.mlp_mult * o.n_experts;
    w1_ = register_parameter("w1", torch::randn({H, o.dim}) / std::sqrt(double(o.dim)));
    w2_ = register_parameter("w2", torch::randn({o.n_experts, H}) / std::sqrt(double(H)));
  }
  at::Tensor forward(const at::Tensor& x) override { return torch::tanh(x.mm(w1_.t())).mm(w2_.t()); }  // [N, E]
  int64_t flops_per_token() const override {
    const int64_t H = o_.mlp_mult * o_.n_experts;
    return 2 * o_.dim * H + 2 * H * o_.n_experts;
  }

 private:
  GateOptions o_;
  at::Tensor w1_, w2_;
};

}  // namespace

void LinearGateOptions::visit(OptionVisitor& v) { v.flag("bias", bias, "linear gate: add a bias"); }
void QuadraticGateOptions::visit(OptionVisitor& v) {
  v.integer("rank", rank, "quadratic gate: rank r of A_i = P_i^T Q_i (0: full D x D)", 0, 1 << 20);
}
void MLPGateOptions::visit(OptionVisitor& v) { v.integer("mult", mult, "mlp gate: hidden width = mult * E", 1, 1024); }

Registry<GateKind>& gate_registry() {
  static Registry<GateKind> reg("gate");
  return reg;
}

namespace {
template <class Options>
std::function<std::shared_ptr<KindOptions>()> defaults_of() {
  return [] { return std::static_pointer_cast<KindOptions>(std::make_shared<Options>()); };
}
}  // namespace

DYNAMOE_REGISTER(gate_registry(), "linear",
                 (GateKind{defaults_of<LinearGateOptions>(),
                           [](const KindOptions& k, GateOptions& o) { o.bias = dynamic_cast<const LinearGateOptions&>(k).bias; },
                           [](const GateOptions& o) -> Gate { return std::make_shared<LinearGate>(o); }}));
DYNAMOE_REGISTER(gate_registry(), "quadratic_polynomial",
                 (GateKind{defaults_of<QuadraticGateOptions>(),
                           [](const KindOptions& k, GateOptions& o) { o.rank = dynamic_cast<const QuadraticGateOptions&>(k).rank; },
                           [](const GateOptions& o) -> Gate { return std::make_shared<QuadraticGate>(o, true); }}));
DYNAMOE_REGISTER(gate_registry(), "quadratic_monomial",
                 (GateKind{defaults_of<QuadraticGateOptions>(),
                           [](const KindOptions& k, GateOptions& o) { o.rank = dynamic_cast<const QuadraticGateOptions&>(k).rank; },
                           [](const GateOptions& o) -> Gate { return std::make_shared<QuadraticGate>(o, false); }}));
DYNAMOE_REGISTER(gate_registry(), "mlp",
                 (GateKind{defaults_of<MLPGateOptions>(),
                           [](const KindOptions& k, GateOptions& o) { o.mlp_mult = dynamic_cast<const MLPGateOptions&>(k).mult; },
                           [](const GateOptions& o) -> Gate { return std::make_shared<MLPGate>(o); }}));

std::vector<std::string> gate_names() { return gate_registry().names(); }

Gate make_gate(const std::string& name, const GateOptions& opt) {
  const GateKind& kind = gate_registry().at(name);
  DYNAMOE_CHECK(opt.dim > 0 && opt.n_experts > 0, "gate '", name, "': dim and n_experts must be positive");
  return kind.make(opt);
}

Gate make_gate(const KindChoice& choice, int64_t dim, int64_t n_experts) {
  GateOptions o;
  o.dim = dim;
  o.n_experts = n_experts;
  gate_registry().at(choice.kind()).configure(choice.options(), o);
  return make_gate(choice.kind(), o);
}

KindChoice gate_choice(const std::string& name) { return KindChoice(name, gate_registry().at(name).defaults()); }

}  // namespace dynamoe::moe
