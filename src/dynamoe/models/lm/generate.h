#pragma once
// Sampling from a TransformerLM: temperature, top-k and top-p (nucleus), with or without the
// KV cache. Both paths see the same window of tokens, so with the same seed they produce the
// same tokens (exactly, in greedy decoding):
//   - the model conditions on the last tokens that fit the context; when the sequence fills
//     the context, the window restarts from its last context/2 tokens (the cache is rebuilt
//     from them; without the cache the same window is fed whole).
//
//   GenerateOptions g;  g.max_new_tokens = 100;  g.sample.temperature = 0.8;  g.sample.top_p = 0.95;
//   GenerateResult r = generate(*model, prompt_ids, g, [](int32_t id) { /* stream it */ });
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <vector>

#include "dynamoe/models/lm/transformer.h"

namespace dynamoe::models::lm {

struct SampleOptions {
  double temperature = 1.0;  ///< 0: greedy (argmax; ties to the lowest id)
  int64_t top_k = 0;         ///< keep the k most likely tokens (0: all)
  double top_p = 1.0;        ///< keep the smallest set of most likely tokens whose mass reaches p
  uint64_t seed = 0;
};

/// Draws a token from logits [V] per the options; `rng` supplies the randomness (one uniform
/// draw per call, none when greedy).
int32_t sample_token(const at::Tensor& logits, const SampleOptions& o, std::mt19937_64& rng);

struct GenerateOptions {
  int64_t max_new_tokens = 100;
  SampleOptions sample;
  bool use_cache = true;
  std::optional<int32_t> stop_id;  ///< stop after generating this id (e.g. end-of-text)
};

struct GenerateResult {
  std::vector<int32_t> tokens;  ///< the new tokens only
  double seconds = 0;           ///< wall time of the whole generation (prompt included)
  double tokens_per_s = 0;      ///< new tokens / seconds
};

/// Continues `prompt` (1 .. context tokens; longer prompts are an error that names both
/// lengths). The model is put in eval mode; no gradients are recorded.
GenerateResult generate(TransformerLMImpl& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                        const std::function<void(int32_t)>& on_token = {});

}  // namespace dynamoe::models::lm
