#include "dynamoe/models/lm/attention.h"

#include <torch/torch.h>

#include <cmath>

#include "dynamoe/util/error.h"

namespace dynamoe::models::lm {

at::Tensor apply_rope(const at::Tensor& x, int64_t offset, double base) {
  const int64_t T = x.size(2), Dh = x.size(3), half = Dh / 2;
  auto opts = x.options();
  at::Tensor inv_freq = at::pow(base, -at::arange(0, half, opts.dtype(at::kDouble)) * 2.0 / Dh);  // [Dh/2]
  at::Tensor pos = at::arange(offset, offset + T, opts.dtype(at::kDouble));                       // [T]
  at::Tensor angle = at::outer(pos, inv_freq);                                                     // [T, Dh/2]
  at::Tensor cos = at::cos(angle).to(x.scalar_type()), sin = at::sin(angle).to(x.scalar_type());
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);  // [B, H, T, Dh/2]
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);       // [B, H, T, Dh]
}

at::Tensor value_activation(const at::Tensor& v, const std::string& name) {
  if (name == "identity") return v;
  if (name == "relu") return at::relu(v);
  if (name == "gelu") return at::gelu(v);
  if (name == "silu") return at::silu(v);
  if (name == "tanh") return at::tanh(v);
  if (name == "sigmoid") return at::sigmoid(v);
  throw ConfigError(str("lm.attention_activation: unknown '", name,
                        "' (valid: identity, relu, gelu, silu, tanh, sigmoid)"));
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t T = q.size(2), S = k.size(2);
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(3))));  // [B, H, T, S]
  if (T > 1) {
    // query t sits at position S - T + t and sees keys 0 .. S - T + t
    at::Tensor future = at::ones({T, S}, q.options().dtype(at::kBool)).triu(S - T + 1);  // [T, S]
    scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  }
  return at::matmul(at::softmax(scores, -1), v);  // [B, H, T, Dh]
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const AttentionOptions& o) : o_(o) {
  DYNAMOE_CHECK(o.heads_ > 0 && o.dim_ % o.heads_ == 0, "attention: dim ", o.dim_, " must divide by heads ", o.heads_);
  value_activation(at::zeros({1}), o.activation_);  // validates the name
  qkv_ = register_module("qkv", Projection(o.dim_, 3 * o.dim_, false, ProjectionInit::kLinear));
  proj_ = register_module("proj", Projection(o.dim_, o.dim_, false, ProjectionInit::kLinear));
}

at::Tensor CausalSelfAttentionImpl::forward(const at::Tensor& x, LayerCache* cache) {
  const int64_t B = x.size(0), T = x.size(1), D = o_.dim_, H = o_.heads_, Dh = D / H;
  const int64_t offset = cache ? cache->length : 0;
  at::Tensor qkv = qkv_->forward(x).view({B, T, 3, H, Dh}).permute({2, 0, 3, 1, 4});  // [3, B, H, T, Dh]
  at::Tensor q = qkv[0], k = qkv[1], v = value_activation(qkv[2], o_.activation_);
  if (o_.positions_ == "rope") {
    q = apply_rope(q, offset, o_.rope_base_);
    k = apply_rope(k, offset, o_.rope_base_);
  }
  if (cache) {
    DYNAMOE_CHECK(offset + T <= o_.capacity_, "attention: ", offset + T, " positions exceed the cache capacity ",
                  o_.capacity_);
    if (!cache->k.defined() || cache->k.size(0) != B) {
      cache->k = at::empty({B, H, o_.capacity_, Dh}, k.options());
      cache->v = at::empty({B, H, o_.capacity_, Dh}, v.options());
    }
    cache->k.narrow(2, offset, T).copy_(k);
    cache->v.narrow(2, offset, T).copy_(v);
    cache->length = offset + T;
    k = cache->k.narrow(2, 0, offset + T);  // [B, H, S, Dh]
    v = cache->v.narrow(2, 0, offset + T);
  }
  at::Tensor y = causal_attention(q, k, v);                     // [B, H, T, Dh]
  return proj_->forward(y.transpose(1, 2).reshape({B, T, D}));  // [B, T, D]
}

}  // namespace dynamoe::models::lm
