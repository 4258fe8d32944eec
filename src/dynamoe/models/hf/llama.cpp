#include "dynamoe/models/hf/llama.h"

#include <torch/torch.h>

#include "dynamoe/models/lm/attention.h"
#include "dynamoe/util/error.h"

namespace dynamoe::models::hf {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);  // [.., D]
  return weight * y.to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> rope_tables(int64_t T, int64_t head_dim, double theta) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor exponent = at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                              static_cast<double>(head_dim);           // [Dh/2]
  const at::Tensor inv_freq = 1.0 / at::pow(theta, exponent);         // [Dh/2]
  const at::Tensor freqs = at::outer(at::arange(0, T, f32), inv_freq);  // [T, Dh/2]
  const at::Tensor angle = at::cat({freqs, freqs}, -1);                 // [T, Dh]
  return {at::cos(angle), at::sin(angle)};
}

at::Tensor apply_hf_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);  // [B, H, T, Dh]
  return x * cos + rotated * sin;
}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
  const int64_t D = c.hidden_size;
  q_proj = register_module("q_proj", Projection(D, heads_ * head_dim_, c.attention_bias));
  k_proj = register_module("k_proj", Projection(D, kv_heads_ * head_dim_, c.attention_bias));
  v_proj = register_module("v_proj", Projection(D, kv_heads_ * head_dim_, c.attention_bias));
  o_proj = register_module("o_proj", Projection(heads_ * head_dim_, D, c.attention_bias));
}

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t B = x.size(0), T = x.size(1), H = heads_, Hkv = kv_heads_, Dh = head_dim_;
  at::Tensor q = q_proj->forward(x).view({B, T, H, Dh}).transpose(1, 2);    // [B, H, T, Dh]
  at::Tensor k = k_proj->forward(x).view({B, T, Hkv, Dh}).transpose(1, 2);  // [B, Hkv, T, Dh]
  at::Tensor v = v_proj->forward(x).view({B, T, Hkv, Dh}).transpose(1, 2);  // [B, Hkv, T, Dh]
  q = apply_hf_rope(q, cos, sin);
  k = apply_hf_rope(k, cos, sin);
  if (Hkv != H) {  // query head h reads key/value head h / (H / Hkv)
    k = k.repeat_interleave(H / Hkv, 1);  // [B, H, T, Dh]
    v = v.repeat_interleave(H / Hkv, 1);  // [B, H, T, Dh]
  }
  const at::Tensor y = lm::causal_attention(q, k, v);                  // [B, H, T, Dh]
  return o_proj->forward(y.transpose(1, 2).reshape({B, T, H * Dh}));  // [B, T, D]
}

LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig& c) {
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  gate_proj = register_module("gate_proj", Projection(D, F, c.mlp_bias));
  up_proj = register_module("up_proj", Projection(D, F, c.mlp_bias));
  down_proj = register_module("down_proj", Projection(F, D, c.mlp_bias));
}

at::Tensor LlamaMLPImpl::forward(const at::Tensor& x) {
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));  // [B, T, F] -> [B, T, D]
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c) {
  self_attn = register_module("self_attn", LlamaAttention(c));
  mlp = register_module("mlp", LlamaMLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& h_in, const at::Tensor& cos, const at::Tensor& sin) {
  const at::Tensor h = h_in + self_attn->forward(input_layernorm->forward(h_in), cos, sin);  // [B, T, D]
  return h + mlp->forward(post_attention_layernorm->forward(h));                          // [B, T, D]
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c) : c_(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  {
    torch::NoGradGuard no_grad;
    embed_tokens->weight.normal_(0.0, 0.02);
  }
  torch::nn::ModuleList list;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    layers.push_back(LlamaDecoderLayer(c));
    list->push_back(layers.back());
  }
  register_module("layers", list);
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

at::Tensor LlamaModelImpl::forward(const at::Tensor& ids) {
  at::Tensor h = embed_tokens->forward(ids);  // [B, T, D]
  const auto [cos, sin] = rope_tables(ids.size(1), c_.head_dim, c_.rope_theta);  // [T, Dh] each
  for (auto& layer : layers) h = layer->forward(h, cos, sin);
  return norm->forward(h);  // [B, T, D]
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& c) : c_(c) {
  c.validate();
  model = register_module("model", LlamaModel(c));
  if (!c.tie_word_embeddings) lm_head = register_module("lm_head", Projection(c.hidden_size, c.vocab_size, false));
}

at::Tensor LlamaForCausalLMImpl::forward(const at::Tensor& ids) {
  DYNAMOE_CHECK(ids.dim() == 2 && ids.scalar_type() == at::kLong, "llama: expected token ids [B, T] of int64, got ",
                ids.sizes(), " of ", ids.scalar_type());
  const int64_t T = ids.size(1);
  DYNAMOE_CHECK(ids.size(0) > 0 && T > 0, "llama: empty input ", ids.sizes());
  DYNAMOE_CHECK(T <= c_.max_position_embeddings, "llama: ", T, " positions exceed max_position_embeddings = ",
                c_.max_position_embeddings);
  DYNAMOE_CHECK(c_.sliding_window == 0 || T <= c_.sliding_window, "llama: ", T,
                " positions exceed sliding_window = ", c_.sliding_window, " (sliding-window attention is not implemented)");
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= c_.vocab_size) {
    const int64_t bad = lo < 0 ? lo : hi;
    const at::Tensor where = (ids == bad).nonzero()[0];  // [2]
    throw Error(str("llama: token id ", bad, " at [", where[0].item<int64_t>(), ", ", where[1].item<int64_t>(),
                    "] is out of range for vocab_size = ", c_.vocab_size));
  }
  const at::Tensor h = model->forward(ids);  // [B, T, D]
  const at::Tensor logits = lm_head.is_empty() ? at::linear(h, model->embed_tokens->weight) : lm_head->forward(h);
  return logits.to(at::kFloat);  // [B, T, V]
}

std::vector<std::pair<std::string, Projection>> LlamaForCausalLMImpl::projections() const {
  return named_projections(*this);
}

}  // namespace dynamoe::models::hf
