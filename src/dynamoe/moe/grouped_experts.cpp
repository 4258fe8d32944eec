#include "dynamoe/moe/grouped_experts.h"

#include <torch/torch.h>

#include <cstdlib>

#include "dynamoe/moe/row_kernels.h"
#include "dynamoe/util/buffer_pool.h"
#include "dynamoe/util/error.h"

namespace dynamoe::moe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum Kind : int64_t { kLinear = 0, kFFN = 1, kSwiGLU = 2 };
enum Act : int64_t { kRelu = 0, kGelu = 1, kSilu = 2, kTanh = 3 };

Kind kind_of(const std::string& k) {
  if (k == "linear") return kLinear;
  if (k == "ffn") return kFFN;
  if (k == "swiglu") return kSwiGLU;
  throw Error(str("grouped experts: expert kind '", k, "' is not grouped (linear, ffn, swiglu are)"));
}

/// Parameter tensors per expert: linear (weight, bias), ffn (w1, b1, w2, b2), swiglu (w1, w3, w2).
int64_t params_per_expert(Kind k) { return k == kLinear ? 2 : k == kFFN ? 4 : 3; }

Act act_of(const std::string& a) {
  if (a == "relu") return kRelu;
  if (a == "gelu") return kGelu;
  if (a == "silu") return kSilu;
  if (a == "tanh") return kTanh;
  throw ConfigError(str("config: activation '", a, "' is not one of relu, gelu, silu, tanh"));
}

bool native_bf16() {
  static const bool native = [] {
    if (const char* v = std::getenv("DYNAMOE_BF16_GEMM")) return std::string(v) == "native";
    // the condition under which LibTorch 1.13 sends bf16 matmuls to oneDNN
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
  }();
  return native;
}

/// A few fp32 rows times a transposed row-major weight: the decode case, where BLAS spends its
/// time re-packing the weight.
bool skinny(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  return a.size(0) <= 4 && a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat &&
         out.scalar_type() == at::kFloat && a.is_contiguous() && b.t().is_contiguous() && out.stride(1) == 1;
}

/// out = a @ b (b may be a transposed view). out may be wider than a and b (fp32 results of bf16
/// inputs); bf16 without native support widens the inputs to fp32, which rounds identically.
void gemm(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (skinny(out, a, b))
    kernels::skinny_gemm_nt(a, b.t(), out, /*accumulate=*/false);
  else if (a.scalar_type() != at::kBFloat16)
    at::mm_out(out, a, b);
  else if (!native_bf16())
    out.scalar_type() == at::kFloat ? (void)at::mm_out(out, a.to(at::kFloat), b.to(at::kFloat))
                                    : (void)out.copy_(at::mm(a.to(at::kFloat), b.to(at::kFloat)));
  else
    out.scalar_type() == at::kBFloat16 ? (void)at::mm_out(out, a, b) : (void)out.copy_(at::mm(a, b));
}

/// out += a @ b
void gemm_add(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (skinny(out, a, b))
    kernels::skinny_gemm_nt(a, b.t(), out, /*accumulate=*/true);
  else if (a.scalar_type() != at::kBFloat16 || (native_bf16() && out.scalar_type() == at::kBFloat16))
    out.addmm_(a, b);
  else
    out.add_(at::mm(native_bf16() ? a : a.to(at::kFloat), native_bf16() ? b : b.to(at::kFloat)));
}

at::Tensor activate(const at::Tensor& h, Act a) {
  switch (a) {
    case kRelu: return at::relu(h);
    case kGelu: return at::gelu(h);
    case kSilu: return at::silu(h);
    case kTanh: return at::tanh(h);
  }
  return {};
}

/// d act(h) / dh applied to g, given h and act(h).
at::Tensor activate_backward(const at::Tensor& g, const at::Tensor& h, const at::Tensor& out, Act a) {
  switch (a) {
    case kRelu: return at::threshold_backward(g, out, 0);
    case kGelu: return at::gelu_backward(g, h);
    case kSilu: return at::silu_backward(g, h);
    case kTanh: return at::tanh_backward(g, out);
  }
  return {};
}

/// The dtype GEMM results leave the experts in: fp32 for bf16 inputs (accumulators are fp32).
at::ScalarType wide(at::ScalarType t) { return t == at::kBFloat16 ? at::kFloat : t; }

/// Runs body(e, begin, count) for every expert with rows; in parallel over experts (one BLAS
/// thread each) when the blocks are too small to feed a multi-threaded GEMM, else in order.
template <class F>
void for_experts(const std::vector<int64_t>& off, F&& body) {
  const int64_t E = static_cast<int64_t>(off.size()) - 1;
  int64_t largest = 0;
  for (int64_t e = 0; e < E; ++e) largest = std::max(largest, off[e + 1] - off[e]);
  auto run = [&](int64_t b, int64_t end) {
    for (int64_t e = b; e < end; ++e)
      if (off[e + 1] > off[e]) body(e, off[e], off[e + 1] - off[e]);
  };
  if (largest <= 64 && at::get_num_threads() > 1)
    at::parallel_for(0, E, 1, run);
  else
    run(0, E);
}

struct GroupedFn : torch::autograd::Function<GroupedFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& xs_in, at::TensorList params,
                               std::vector<int64_t> off, int64_t kind, int64_t act, at::ScalarType dtype) {
    const int64_t A = xs_in.size(0), D = xs_in.size(1);
    at::Tensor xs = xs_in.scalar_type() == dtype ? xs_in.contiguous() : xs_in.to(dtype);
    std::vector<at::Tensor> w;  // weights in the compute dtype
    for (const auto& p : params) w.push_back(p.scalar_type() == dtype ? p : p.to(dtype));
    const int64_t per = params_per_expert(static_cast<Kind>(kind));
    at::Tensor out = pooled_empty({A, D}, wide(dtype));  // [A, D]
    variable_list saved = {xs};
    if (kind == kLinear) {
      for_experts(off, [&](int64_t e, int64_t b, int64_t n) {
        at::Tensor o = out.narrow(0, b, n);
        o.copy_(params[e * per + 1].unsqueeze(0).expand({n, D}));
        gemm_add(o, xs.narrow(0, b, n), w[e * per].t());
      });
    } else {
      const int64_t F = w[0].size(0);
      at::Tensor h1 = pooled_empty({A, F}, dtype);  // [A, F]
      at::Tensor h3 = kind == kSwiGLU ? pooled_empty({A, F}, dtype) : at::Tensor();
      for_experts(off, [&](int64_t e, int64_t b, int64_t n) {
        at::Tensor x_e = xs.narrow(0, b, n);
        if (kind == kFFN) {
          at::Tensor h = h1.narrow(0, b, n);
          h.copy_(w[e * per + 1].unsqueeze(0).expand({n, F}));
          gemm_add(h, x_e, w[e * per].t());
        } else {
          gemm(h1.narrow(0, b, n), x_e, w[e * per].t());
          gemm(h3.narrow(0, b, n), x_e, w[e * per + 1].t());
        }
      });
      // elementwise work in fp32 for bf16 (one rounding of the result instead of one per op)
      const at::ScalarType ew = wide(dtype);
      at::Tensor a = (kind == kSwiGLU ? at::silu(h1.to(ew)).mul_(h3.to(ew)) : activate(h1.to(ew), static_cast<Act>(act)))
                         .to(dtype);  // [A, F]
      for_experts(off, [&](int64_t e, int64_t b, int64_t n) {
        at::Tensor o = out.narrow(0, b, n);
        if (kind == kFFN) {
          o.copy_(params[e * per + 3].unsqueeze(0).expand({n, D}));
          gemm_add(o, a.narrow(0, b, n), w[e * per + 2].t());
        } else {
          gemm(o, a.narrow(0, b, n), w[e * per + 2].t());
        }
      });
      saved.push_back(h1);
      saved.push_back(kind == kSwiGLU ? h3 : at::Tensor());
      saved.push_back(a);
    }
    for (const auto& t : w) saved.push_back(t);
    ctx->save_for_backward(saved);
    ctx->saved_data["offsets"] = off;
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["act"] = act;
    ctx->saved_data["xs_dtype"] = static_cast<int64_t>(xs_in.scalar_type());
    std::vector<int64_t> p_dtypes;
    for (const auto& p : params) p_dtypes.push_back(static_cast<int64_t>(p.scalar_type()));
    ctx->saved_data["param_dtypes"] = p_dtypes;
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto s = ctx->get_saved_variables();
    const std::vector<int64_t> off = ctx->saved_data["offsets"].toIntVector();
    const auto kind = static_cast<Kind>(ctx->saved_data["kind"].toInt());
    const auto act = static_cast<Act>(ctx->saved_data["act"].toInt());
    const std::vector<int64_t> p_dtypes = ctx->saved_data["param_dtypes"].toIntVector();
    const at::Tensor& xs = s[0];
    const at::ScalarType dtype = xs.scalar_type();
    const int64_t A = xs.size(0), D = xs.size(1), per = params_per_expert(kind);
    const size_t w0 = kind == kLinear ? 1 : 4;
    auto W = [&](int64_t e, int64_t i) -> const at::Tensor& { return s[w0 + e * per + i]; };
    const int64_t n_params = static_cast<int64_t>(s.size() - w0);
    const at::Tensor g_wide = grad[0].contiguous();                                  // [A, D]
    const at::Tensor g_out = g_wide.scalar_type() == dtype ? g_wide : g_wide.to(dtype);  // for the GEMMs

    std::vector<at::Tensor> dw(n_params);  // in the params' dtypes: bf16 GEMMs write fp32 results
    for (int64_t i = 0; i < n_params; ++i) {
      const bool idle = off[i / per + 1] == off[i / per];  // an expert without rows gets zeros
      const auto opts = s[w0 + i].options().dtype(static_cast<at::ScalarType>(p_dtypes[i]));
      dw[i] = idle ? at::zeros(s[w0 + i].sizes(), opts) : at::empty(s[w0 + i].sizes(), opts);
    }
    auto bias_grad = [](at::Tensor& db, const at::Tensor& g) { at::sum_out(db, g, {0}, false, db.scalar_type()); };
    at::Tensor dxs = pooled_empty({A, D}, wide(dtype));  // [A, D]
    if (kind == kLinear) {
      for_experts(off, [&](int64_t e, int64_t b, int64_t n) {
        at::Tensor g_e = g_out.narrow(0, b, n);
        gemm(dw[e * per], g_e.t(), xs.narrow(0, b, n));
        bias_grad(dw[e * per + 1], g_wide.narrow(0, b, n));
        gemm(dxs.narrow(0, b, n), g_e, W(e, 0));
      });
    } else {
      const at::Tensor &h1 = s[1], &h3 = s[2], &a = s[3];
      const int64_t F = h1.size(1);
      at::Tensor da = pooled_empty({A, F}, dtype);  // [A, F]
      const int64_t i_w2 = 2, i_b2 = 3;  // w2 is the third tensor of both kinds
      for_experts(off, [&](int64_t e, int64_t b, int64_t n) {
        at::Tensor g_e = g_out.narrow(0, b, n);
        gemm(dw[e * per + i_w2], g_e.t(), a.narrow(0, b, n));
        if (kind == kFFN) bias_grad(dw[e * per + i_b2], g_wide.narrow(0, b, n));
        gemm(da.narrow(0, b, n), g_e, W(e, i_w2));
      });
      at::Tensor dh1, dh3;  // [A, F], elementwise in fp32 for bf16 as in forward
      const at::ScalarType ew = wide(dtype);
      const at::Tensor da_w = da.to(ew), h1_w = h1.to(ew);
      if (kind == kSwiGLU) {
        dh3 = (da_w * at::silu(h1_w)).to(dtype);
        dh1 = at::silu_backward(da_w * h3.to(ew), h1_w).to(dtype);
      } else {
        dh1 = activate_backward(da_w, h1_w, a.to(ew), act).to(dtype);
      }
      for_experts(off, [&](int64_t e, int64_t b, int64_t n) {
        at::Tensor x_e = xs.narrow(0, b, n), d1 = dh1.narrow(0, b, n), dx_e = dxs.narrow(0, b, n);
        gemm(dw[e * per], d1.t(), x_e);
        gemm(dx_e, d1, W(e, 0));
        if (kind == kFFN) {
          bias_grad(dw[e * per + 1], d1);
        } else {
          at::Tensor d3 = dh3.narrow(0, b, n);
          gemm(dw[e * per + 1], d3.t(), x_e);
          gemm_add(dx_e, d3, W(e, 1));
        }
      });
    }
    variable_list out;
    const auto xs_dtype = static_cast<at::ScalarType>(ctx->saved_data["xs_dtype"].toInt());
    out.push_back(xs_dtype == dxs.scalar_type() ? dxs : dxs.to(xs_dtype));
    out.insert(out.end(), dw.begin(), dw.end());
    out.resize(out.size() + 4);  // offsets, kind, act, dtype
    return out;
  }
};

}  // namespace

std::vector<std::string> grouped_param_names(const std::string& kind) {
  switch (kind_of(kind)) {
    case kLinear: return {"weight", "bias"};
    case kFFN: return {"w1", "b1", "w2", "b2"};
    case kSwiGLU: return {"w1", "w3", "w2"};
  }
  return {};
}

bool grouped_supports(const std::string& kind) { return kind == "linear" || kind == "ffn" || kind == "swiglu"; }

at::Tensor grouped_experts(const at::Tensor& xs, const std::vector<int64_t>& offsets,
                           const std::vector<at::Tensor>& params, const GroupedExpertsOptions& o) {
  const int64_t per = params_per_expert(kind_of(o.kind));
  const int64_t E = static_cast<int64_t>(offsets.size()) - 1;
  DYNAMOE_CHECK(E >= 0 && static_cast<int64_t>(params.size()) == E * per, "grouped experts: ", E, " experts of kind ",
                o.kind, " need ", E * per, " parameter tensors, got ", params.size());
  DYNAMOE_CHECK(xs.dim() == 2 && xs.size(0) == (E > 0 ? offsets.back() : 0), "grouped experts: expected xs [",
                offsets.empty() ? 0 : offsets.back(), ", D], got ", xs.sizes());
  DYNAMOE_CHECK(o.compute == at::kFloat || o.compute == at::kDouble || o.compute == at::kBFloat16,
                "grouped experts: compute dtype must be float32, float64 or bfloat16, got ", o.compute);
  if (E == 0 || xs.size(0) == 0) return at::zeros({0, xs.size(1)}, xs.options().dtype(o.compute));
  const int64_t act = o.kind == "ffn" ? static_cast<int64_t>(act_of(o.activation)) : 0;
  return GroupedFn::apply(xs, at::TensorList(params), offsets, static_cast<int64_t>(kind_of(o.kind)), act,
                          o.compute)[0];
}

std::string bf16_gemm_backend() { return native_bf16() ? "onednn" : "fp32-emulated"; }

}  // namespace dynamoe::moe
