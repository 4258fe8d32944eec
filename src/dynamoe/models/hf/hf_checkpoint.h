#pragma once
// Loading a Hugging Face LLaMA-architecture checkpoint folder:
//   dir/config.json                        -> LlamaConfig (llama_config.h)
//   dir/model.safetensors                  single file, or
//   dir/model.safetensors.index.json       {"weight_map": {tensor: shard file}} + the shards
// Tensors may be stored as F32, F16, BF16 (or F64); they are converted to fp32. Every
// parameter of LlamaForCausalLM must be present with its exact shape, and nothing else may be
// left over (except `*.rotary_emb.inv_freq` buffers of old conversions, and a `lm_head.weight`
// identical to the embedding in a tied model). Every problem is a one-line dynamoe::Error
// naming the file, the tensor and the shapes.
//
//   LlamaForCausalLM lm = load_llama("checkpoints/TinyLlama");   // eval mode, base frozen
//   at::Tensor logits = lm->forward(ids);                          // [B, T, V]
#include <string>

#include "dynamoe/models/hf/llama.h"

namespace dynamoe::models::hf {

/// Reads dir/config.json and the weights of `dir` into a new LlamaForCausalLM, shard by shard
/// (peak memory: the fp32 model plus one shard). The result is in eval mode and every
/// parameter has requires_grad(false): the base is frozen, so adapters attached afterwards
/// are the only trainable parameters.
LlamaForCausalLM load_llama(const std::string& dir);

/// Sets requires_grad(false) on every parameter of `module` (and its submodules).
void freeze(torch::nn::Module& module);

}  // namespace dynamoe::models::hf
