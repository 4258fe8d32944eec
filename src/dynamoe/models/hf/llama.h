#pragma once
// LlamaForCausalLM: the Hugging Face LLaMA / Mistral decoder, built so that named_parameters()
// yields exactly the HF checkpoint names (model.embed_tokens.weight,
// model.layers.{i}.self_attn.q_proj.weight, ..., model.norm.weight, lm_head.weight).
// Shape legend: B sequences, T positions, D hidden_size, H heads, Hkv key/value heads,
// Dh head_dim, F intermediate_size, V vocab_size.
//
//   h = embed_tokens(ids)                                          [B, T, D]
//   per layer: h = h + o_proj(Attn(RoPE(q_proj(n)), RoPE(k_proj(n)), v_proj(n))), n = RMSNorm(h)
//              h = h + down_proj(silu(gate_proj(n)) * up_proj(n)),  n = RMSNorm(h)
//   logits = lm_head(RMSNorm(h))   (lm_head = embed_tokens.weight when tie_word_embeddings)
//
//   LlamaForCausalLM lm(cfg);
//   at::Tensor logits = lm->forward(ids);           // ids [B, T] int64 -> [B, T, V] fp32
//   for (auto& [name, p] : lm->projections())       // "model.layers.0.self_attn.q_proj", ...
//     if (name.find("q_proj") != std::string::npos) p->set_adapter(my_lora);
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dynamoe/models/hf/llama_config.h"
#include "dynamoe/models/projection.h"

namespace dynamoe::models::hf {

// The attach points (models/projection.h), under their earlier names here.
using models::Adapter;
using models::FunctionAdapter;
using models::Projection;
using models::ProjectionImpl;

/// y = x * rsqrt(mean(x^2) + eps) * weight over the last dimension, computed in fp32.
/// Parameter: weight [D].
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  /// x [.., D] -> [.., D] (in x's dtype).
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  ///< [D]

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

/// cos and sin tables [T, Dh] of HF RoPE for positions 0 .. T-1: inv_freq = 1 /
/// theta^(arange(0, Dh, 2) / Dh) (fp32 as transformers computes it), angles repeated over both
/// halves.
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t T, int64_t head_dim, double theta);
/// x [B, H, T, Dh] -> x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) of the halves.
at::Tensor apply_hf_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

/// Causal grouped-query self-attention. Parameters: q_proj [H*Dh, D], k_proj and v_proj
/// [Hkv*Dh, D], o_proj [D, H*Dh] (biases [out] when attention_bias).
class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& c);
  /// x [B, T, D], rope tables [T, Dh] -> [B, T, D].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
  Projection q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(LlamaAttention);

/// SwiGLU: down_proj(silu(gate_proj(x)) * up_proj(x)). Parameters: gate_proj and up_proj
/// [F, D], down_proj [D, F] (biases when mlp_bias).
class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaConfig& c);
  /// x [B, T, D] -> [B, T, D].
  at::Tensor forward(const at::Tensor& x);
  Projection gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

/// One pre-norm decoder layer: self_attn, mlp, input_layernorm, post_attention_layernorm.
class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& c);
  /// h [B, T, D] -> [B, T, D].
  at::Tensor forward(const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin);
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

/// The decoder without its head: embed_tokens [V, D], layers.{i}, norm [D].
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c);
  /// ids [B, T] int64 (checked by the caller) -> final normalised hidden states [B, T, D].
  at::Tensor forward(const at::Tensor& ids);
  torch::nn::Embedding embed_tokens{nullptr};
  std::vector<LlamaDecoderLayer> layers;
  RMSNorm norm{nullptr};

 private:
  LlamaConfig c_;
};
TORCH_MODULE(LlamaModel);

/// The causal LM: `model` and, unless tie_word_embeddings, `lm_head` [V, D] (no bias).
/// Parameters start random (normal, std 0.02; norms 1); load_llama (hf_checkpoint.h) fills them.
class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const LlamaConfig& c);
  /// ids [B, T] int64 -> logits [B, T, V] fp32. Throws dynamoe::Error for ids that are not
  /// [B, T] int64, an id outside [0, V), T > max_position_embeddings or T > sliding_window.
  at::Tensor forward(const at::Tensor& ids);
  /// Every projection with its HF module name ("model.layers.0.self_attn.q_proj", ...,
  /// "lm_head" when untied), in parameter order: where adapters are attached by name.
  std::vector<std::pair<std::string, Projection>> projections() const;
  const LlamaConfig& config() const { return c_; }

  LlamaModel model{nullptr};
  Projection lm_head{nullptr};  ///< empty when tied

 private:
  LlamaConfig c_;
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace dynamoe::models::hf
