#pragma once
// LlamaConfig: the fields of a Hugging Face `config.json` that define a LLaMA-architecture
// decoder (model_type llama or mistral). Unknown keys (token ids, torch_dtype, architectures,
// ...) are ignored; a supported key with a bad type or value is a ConfigError of one line
// naming the file, the field and the value:
//   config.json: num_key_value_heads = 3 must divide num_attention_heads = 8
//
//   LlamaConfig c = load_llama_config(dir + "/config.json");
//   int64_t Dh = c.head_dim;                       // filled in: hidden_size / heads when absent
#include <cstdint>
#include <string>

namespace dynamoe::models::hf {

struct LlamaConfig {
  std::string model_type;                ///< llama | mistral (required)
  int64_t hidden_size = 0;               ///< D (required)
  int64_t intermediate_size = 0;         ///< F, the SwiGLU width (required)
  int64_t num_hidden_layers = 0;         ///< L (required)
  int64_t num_attention_heads = 0;       ///< H (required)
  int64_t num_key_value_heads = 0;       ///< Hkv; default H; must divide H (grouped-query attention)
  int64_t head_dim = 0;                  ///< Dh; default D / H (which must then divide); even (RoPE)
  int64_t vocab_size = 0;                ///< V (required)
  int64_t max_position_embeddings = 0;   ///< longest sequence; default 2048 (llama), 131072 (mistral)
  int64_t sliding_window = 0;            ///< mistral only; 0 = none (null). Longer inputs are refused.
  double rms_norm_eps = 1e-6;            ///< RMSNorm epsilon
  double rope_theta = 10000.0;           ///< RoPE base
  bool tie_word_embeddings = false;      ///< lm_head shares model.embed_tokens.weight
  bool attention_bias = false;           ///< q/k/v/o projections carry biases
  bool mlp_bias = false;                 ///< gate/up/down projections carry biases
  std::string hidden_act = "silu";       ///< only silu is supported

  /// Checks every field; throws ConfigError "<where>: <field> = <value> <problem>".
  void validate(const std::string& where = "config.json") const;
};

/// Parses the text of a HF config.json (fills defaults, then validates); `where` names the
/// source in errors.
LlamaConfig parse_llama_config(const std::string& json_text, const std::string& where = "config.json");
/// Reads and parses a config.json file.
LlamaConfig load_llama_config(const std::string& path);

}  // namespace dynamoe::models::hf
