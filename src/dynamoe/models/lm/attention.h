#pragma once
// Causal multi-head self-attention with QGMoE's active-attention (docs/methods.md
// section 6), RoPE or no positions, and an optional KV cache for generation.
// Shape legend: B sequences, T new positions, S = cached + new positions, D width, H heads,
// Dh = D / H head width.
//
//   Attention(X) = softmax(Q K^T / sqrt(Dh) + causal mask) * sigma(V) per head, V = X W_V,
//   then the output projection; sigma = identity is standard attention.
//
//   CausalSelfAttention attn(AttentionOptions{}.dim(64).heads(4).activation("silu"));
//   at::Tensor y = attn->forward(x);                 // x [B, T, D] -> [B, T, D]
//   LayerCache c;  y = attn->forward(x, &c);         // appends K, sigma(V) of x to c
// Parameters: qkv.weight [3D, D] (rows: Q, K, V), proj.weight [D, D] (no biases).
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "dynamoe/models/projection.h"

namespace dynamoe::models::lm {

/// One attention layer's cache: keys (after RoPE) and activated values of every position so far.
struct LayerCache {
  at::Tensor k, v;      ///< [B, H, capacity, Dh], filled up to `length`
  int64_t length = 0;   ///< positions cached
};

struct AttentionOptions {
  int64_t dim_ = 64, heads_ = 4, capacity_ = 256;
  std::string positions_ = "rope";    ///< rope | learned (learned: added by the caller; none here)
  double rope_base_ = 10000.0;
  std::string activation_ = "identity";  ///< identity | relu | gelu | silu | tanh | sigmoid
  AttentionOptions& dim(int64_t v) { dim_ = v; return *this; }
  AttentionOptions& heads(int64_t v) { heads_ = v; return *this; }
  /// Longest sequence (cache size).
  AttentionOptions& capacity(int64_t v) { capacity_ = v; return *this; }
  AttentionOptions& positions(std::string v) { positions_ = std::move(v); return *this; }
  AttentionOptions& rope_base(double v) { rope_base_ = v; return *this; }
  AttentionOptions& activation(std::string v) { activation_ = std::move(v); return *this; }
};

/// x [B, H, T, Dh] with rotary position embedding for positions offset .. offset + T - 1, in the
/// rotate-half layout of GPT-NeoX and LLaMA: pairs (i, i + Dh/2) rotate by angle
/// pos * base^(-2i / Dh).
at::Tensor apply_rope(const at::Tensor& x, int64_t offset, double base);

/// The value activation sigma by name (identity, relu, gelu, silu, tanh, sigmoid); throws
/// ConfigError listing the valid names.
at::Tensor value_activation(const at::Tensor& v, const std::string& name);

/// softmax(q k^T / sqrt(Dh) + causal mask) v for q [B, H, T, Dh] at positions S - T .. S - 1
/// and k, v [B, H, S, Dh] at positions 0 .. S - 1.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const AttentionOptions& o);
  /// x [B, T, D] -> [B, T, D]. With a cache, x continues the cached positions and its keys and
  /// activated values are appended (throws when capacity would be exceeded).
  at::Tensor forward(const at::Tensor& x, LayerCache* cache = nullptr);
  const AttentionOptions& options() const { return o_; }

 private:
  AttentionOptions o_;
  Projection qkv_{nullptr}, proj_{nullptr};  ///< adapter attach points (models/projection.h)
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace dynamoe::models::lm
