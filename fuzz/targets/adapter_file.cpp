// Adapter files (load_adapters) attached to a tiny LLaMA-layout model: 2 layers of width 32,
// MLP width 64, vocabulary 61.
#include "../fuzz_target.h"

#include <torch/torch.h>

#include "dynamoe/adapters/adapter_file.h"
#include "dynamoe/models/hf/llama.h"
#include "dynamoe/models/hf/llama_config.h"

DYNAMOE_FUZZ_TARGET(adapter_file) {
  using namespace dynamoe;
  static models::hf::LlamaForCausalLM model(models::hf::parse_llama_config(
      R"({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 61,
          "max_position_embeddings": 32, "tie_word_embeddings": false})"));
  const std::string path = fuzz::scratch_file("adapter.safetensors", fuzz::text(data, size));
  fuzz::expect_clean([&] { (void)adapters::load_adapters(*model, path); });
}
