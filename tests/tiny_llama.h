#pragma once
// A tiny LLaMA-layout config.json shared by the adapter tests: 2 layers of width 32, 4 heads
// over 2 key/value heads (GQA), vocabulary 61, untied output head.
namespace dynamoe::testutil {

inline const char* kTinyLlamaConfig = R"({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 61, "max_position_embeddings": 32,
  "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": false})";

}  // namespace dynamoe::testutil
