#include "dynamoe/moe/expert.h"

#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <map>

#include "dynamoe/util/activation.h"
#include "dynamoe/util/error.h"

namespace dynamoe::moe {
namespace {

at::Tensor init_weight(int64_t out, int64_t in) { return torch::randn({out, in}) / std::sqrt(double(in)); }

/// Parameters: weight [D, D], bias [D].
class LinearExpert : public ExpertImpl {
 public:
  explicit LinearExpert(const ExpertOptions& o) : ExpertImpl("linear"), d_(o.dim) {
    w_ = register_parameter("weight", init_weight(o.dim, o.dim));
    b_ = register_parameter("bias", torch::zeros({o.dim}));
  }
  at::Tensor forward(const at::Tensor& x) override { return torch::addmm(b_, x, w_.t()); }
  int64_t flops_per_token() const override { return 2 * d_ * d_; }

 private:
  int64_t d_;
  at::Tensor w_, b_;
};

/// Parameters: w1 [F, D], b1 [F], w2 [D, F], b2 [D].
class FFNExpert : public ExpertImpl {
 public:
  explicit FFNExpert(const ExpertOptions& o)
      : ExpertImpl("ffn"), d_(o.dim), f_(o.hidden), act_(dynamoe::activation(o.activation)) {
    w1_ = register_parameter("w1", init_weight(o.hidden, o.dim));
    b1_ = register_parameter("b1", torch::zeros({o.hidden}));
    w2_ = register_parameter("w2", init_weight(o.dim, o.hidden));
    b2_ = register_parameter("b2", torch::zeros({o.dim}));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return torch::addmm(b2_, act_(torch::addmm(b1_, x, w1_.t())), w2_.t());  // [n, F] -> [n, D]
  }
  int64_t flops_per_token() const override { return 4 * d_ * f_; }

 private:
  int64_t d_, f_;
  std::function<at::Tensor(const at::Tensor&)> act_;
  at::Tensor w1_, b1_, w2_, b2_;
};

/// Parameters: w1 [F, D], w3 [F, D], w2 [D, F].
class SwiGLUExpert : public ExpertImpl {
 public:
  explicit SwiGLUExpert(const ExpertOptions& o) : ExpertImpl("swiglu"), d_(o.dim), f_(o.hidden) {
    w1_ = register_parameter("w1", init_weight(o.hidden, o.dim));
    w3_ = register_parameter("w3", init_weight(o.hidden, o.dim));
    w2_ = register_parameter("w2", init_weight(o.dim, o.hidden));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return (torch::silu(x.mm(w1_.t())) * x.mm(w3_.t())).mm(w2_.t());  // [n, F] -> [n, D]
  }
  int64_t flops_per_token() const override { return 6 * d_ * f_; }

 private:
  int64_t d_, f_;
  at::Tensor w1_, w3_, w2_;
};

class ZeroExpert : public ExpertImpl {
 public:
  ZeroExpert() : ExpertImpl("zero") {}
  at::Tensor forward(const at::Tensor& x) override { return torch::zeros_like(x); }
  int64_t flops_per_token() const override { return 0; }
  bool computes() const override { return false; }
};

class CopyExpert : public ExpertImpl {
 public:
  CopyExpert() : ExpertImpl("copy") {}
  at::Tensor forward(const at::Tensor& x) override { return x; }
  int64_t flops_per_token() const override { return 0; }
};

/// Parameters: wc [2, D], v [D].
class ConstantExpert : public ExpertImpl {
 public:
  explicit ConstantExpert(const ExpertOptions& o) : ExpertImpl("constant"), d_(o.dim) {
    wc_ = register_parameter("wc", init_weight(2, o.dim));
    v_ = register_parameter("v", torch::randn({o.dim}) * 0.02);
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor a = torch::softmax(x.mm(wc_.t()), 1);  // [n, 2]
    return a.select(1, 0).unsqueeze(1) * x + a.select(1, 1).unsqueeze(1) * v_.unsqueeze(0);
  }
  int64_t flops_per_token() const override { return 4 * d_; }

 private:
  int64_t d_;
  at::Tensor wc_, v_;
};

}  // namespace

Registry<std::function<Expert(const ExpertOptions&)>>& expert_registry() {
  static Registry<std::function<Expert(const ExpertOptions&)>> reg("expert kind");
  return reg;
}

DYNAMOE_REGISTER(expert_registry(), "linear", [](const ExpertOptions& o) -> Expert { return std::make_shared<LinearExpert>(o); });
DYNAMOE_REGISTER(expert_registry(), "ffn", [](const ExpertOptions& o) -> Expert { return std::make_shared<FFNExpert>(o); });
DYNAMOE_REGISTER(expert_registry(), "swiglu", [](const ExpertOptions& o) -> Expert { return std::make_shared<SwiGLUExpert>(o); });
DYNAMOE_REGISTER(expert_registry(), "zero", [](const ExpertOptions&) -> Expert { return std::make_shared<ZeroExpert>(); });
DYNAMOE_REGISTER(expert_registry(), "copy", [](const ExpertOptions&) -> Expert { return std::make_shared<CopyExpert>(); });
DYNAMOE_REGISTER(expert_registry(), "constant",
                 [](const ExpertOptions& o) -> Expert { return std::make_shared<ConstantExpert>(o); });

std::vector<std::string> expert_names() { return expert_registry().names(); }

Expert make_expert(const std::string& kind, const ExpertOptions& opt) {
  const auto& make = expert_registry().at(kind);
  DYNAMOE_CHECK(opt.dim > 0, "expert '", kind, "': dim must be positive");
  DYNAMOE_CHECK((kind != "ffn" && kind != "swiglu") || opt.hidden > 0, "expert '", kind, "': hidden must be positive");
  return make(opt);
}

}  // namespace dynamoe::moe
