#pragma once
// LoRA (Hu et al. 2021) on the frozen projections (models/projection.h) of a model: the Hugging
// Face decoder (models/hf) or dynamoe's TransformerLM (fc1, fc2, attn.qkv, attn.proj):
//   Delta(x) = (alpha / r) * dropout(x) A^T B^T,   A [r, in], B [out, r]
// added to the frozen base map x W^T (+ b) through the projection's adapter attach point.
// B starts at zero, so a freshly attached adapter leaves the model's outputs unchanged; A starts
// uniform in [-1/sqrt(in), 1/sqrt(in)] (PEFT's kaiming_uniform with a = sqrt(5)).
// Defaults are MoLA's and DynMoLE's (docs/methods.md section 8.1): r = 24, alpha = 48, dropout 0.05.
//
//   LlamaForCausalLM lm = load_llama(dir);                       // base frozen
//   auto names = attach_lora(*lm, "mlp\\.(gate|up|down)_proj", LoraOptions().rank(8));
//   ... train: only the adapters' lora_A / lora_B have requires_grad ...
//   save_adapters(*lm, "adapter.safetensors");                   // adapter_file.h
//   merge_lora(*lm);                                             // W += (alpha / r) B A; adapters gone
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/models/projection.h"

namespace dynamoe::adapters {

/// LoRA hyperparameters (fluent setters, as torch::nn::LinearOptions).
struct LoraOptions {
  LoraOptions& rank(int64_t r) { rank_ = r; return *this; }
  LoraOptions& alpha(double a) { alpha_ = a; return *this; }
  LoraOptions& dropout(double p) { dropout_ = p; return *this; }
  int64_t rank() const { return rank_; }
  double alpha() const { return alpha_; }
  double dropout() const { return dropout_; }
  /// Throws ConfigError naming the field: rank >= 1, alpha > 0, dropout in [0, 1).
  void validate() const;

 private:
  int64_t rank_ = 24;
  double alpha_ = 48;
  double dropout_ = 0.05;
};

/// One LoRA adapter. Parameters: lora_A [r, in], lora_B [out, r].
class LoraImpl : public models::Adapter {
 public:
  LoraImpl(int64_t in_features, int64_t out_features, const LoraOptions& options);
  /// x [.., in] -> (alpha / r) * dropout(x) A^T B^T  [.., out] (dropout only in training mode).
  at::Tensor forward(const at::Tensor& x) override;
  /// (alpha / r) * B A [out, in]: what merging adds to the base weight.
  at::Tensor delta_weight() const;
  double scaling() const { return options_.alpha() / static_cast<double>(options_.rank()); }
  const LoraOptions& options() const { return options_; }

  at::Tensor lora_A;  ///< [r, in]
  at::Tensor lora_B;  ///< [out, r]

 private:
  LoraOptions options_;
};

TORCH_MODULE(Lora);

/// Attaches a new LoRA adapter to every projection of `model` whose module path matches the
/// ECMAScript regular expression `pattern` (searched, e.g. "mlp\\.(gate|up)_proj" or
/// "self_attn\\.[qv]_proj"), replacing any adapter there. Returns the names, in model order.
/// Throws ConfigError when the pattern is invalid or matches nothing (naming a few projections).
std::vector<std::string> attach_lora(torch::nn::Module& model, const std::string& pattern,
                                     const LoraOptions& options = {});

/// Attaches make(in_features, out_features) to every projection of `model` whose module path
/// matches `pattern` (searched, ECMAScript), replacing any adapter there; returns the names in
/// model order. `what` names the adapter kind in errors ("lora", "lora mixture"): ConfigError
/// when the pattern is invalid or matches nothing (naming a few projections).
std::vector<std::string> attach_adapters(torch::nn::Module& model, const std::string& pattern, const std::string& what,
                                         const std::function<std::shared_ptr<models::Adapter>(int64_t, int64_t)>& make);

/// Folds every attached LoRA adapter into its projection's weight (W += (alpha / r) B A, in the
/// weight's dtype) and detaches it; returns the names merged. The merged model computes the
/// same function (up to rounding) with no adapter, for export. Other adapter kinds are refused.
std::vector<std::string> merge_lora(torch::nn::Module& model);

}  // namespace dynamoe::adapters
