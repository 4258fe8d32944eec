#pragma once
// Adapter checkpoints: only the adapters' tensors, in one small safetensors file, with the
// hyperparameters in its metadata, so an adapter ships and reloads without the base model.
//
//   file:     {"<projection>.adapter.lora_A": [r, in], "<projection>.adapter.lora_B": [out, r], ...}
//   metadata: {"dynamoe_adapter": "lora", "rank": "24", "alpha": "48", "dropout": "0.05",
//              "targets": "model.layers.0.mlp.up_proj,..."}
//
//   save_adapters(*lm, "runs/x/adapter.safetensors");        // written atomically
//   LlamaForCausalLM lm2 = load_llama(base_dir);
//   load_adapters(*lm2, "runs/x/adapter.safetensors");       // attaches and fills them
#include <string>
#include <vector>

#include "dynamoe/models/projection.h"

namespace dynamoe::adapters {

/// Writes every attached adapter of `model` (atomically): all LoRA, or all mixtures of LoRA
/// experts (kind "lora_mixture", the options as JSON in metadata "mixture", tensors
/// router_weight, lora_A, lora_B per target). Throws dynamoe::Error when no adapter is attached,
/// when the adapters are of mixed kinds or differ in hyperparameters.
void save_adapters(torch::nn::Module& model, const std::string& path);

/// Attaches the adapters of the file to `model` (replacing any there) and loads their tensors;
/// returns the projections adapted. Every problem is a one-line dynamoe::Error naming the file:
/// not an adapter file, a target the model does not have, a missing tensor, a shape that does
/// not fit the projection, a truncated file.
std::vector<std::string> load_adapters(torch::nn::Module& model, const std::string& path);

}  // namespace dynamoe::adapters
