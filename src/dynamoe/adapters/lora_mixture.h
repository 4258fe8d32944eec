#pragma once
// Mixtures of LoRA experts on a frozen projection (MoLA, MixLoRA, DynMoLE): E LoRA experts and a
// router per adapted projection (docs/methods.md section 8.2):
//   z = W_g x                                       router logits [E], W_g [E, in]
//   (w, S) = route(router, z)                       any causal router of src/dynamoe/moe
//   Delta(x) = sum_{i in S} w_i (alpha / r) B_i A_i dropout(x)
// added to the frozen base map through the projection's adapter attach point. Every B_i starts
// at zero, so a fresh mixture leaves the model's outputs unchanged. One dropout mask per token
// is shared by the experts (they see the same dropped input).
//
// Presets (LoraMixtureOptions::preset):
//   mola     top-2 (Mixtral-normalised), no auxiliary loss            (MoLA, arXiv 2402.08562)
//   mixlora  top-2 (Mixtral-normalised) + Switch load balance 0.01    (MixLoRA, arXiv 2404.15159)
//   dynmole  tsallis_hybrid + the DynMoLE tsallis loss, as written    (DynMoLE, arXiv 2504.00661)
// all with 6 experts of rank 24, alpha 48, dropout 0.05 (the MoLA/DynMoLE defaults, docs/methods.md section 8.3).
//
//   auto names = attach_lora_mixture(*lm, "mlp\\.(gate|up|down)_proj", LoraMixtureOptions::preset("dynmole"));
//   loss = cross_entropy(lm->forward(ids), ...) + mixture_aux_loss(*lm);   // after each forward
//   MixtureTally t = mixture_tally(*lm);   // routing counts while tallying (set_tallying)
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "dynamoe/adapters/lora.h"
#include "dynamoe/moe/losses.h"
#include "dynamoe/moe/routing.h"

namespace dynamoe::adapters {

/// Hyperparameters of a mixture of LoRA experts.
struct LoraMixtureOptions {
  LoraOptions lora;                 ///< rank, alpha, dropout of every expert
  int64_t experts = 6;
  KindChoice router = moe::router_choice("top_k");  ///< a causal router of the registry and its options
  moe::LossCoefficients losses{0, 0, 0, 0};  ///< auxiliary router losses (none by default)

  /// mola, mixlora or dynmole (above); anything else is a ConfigError listing them.
  static LoraMixtureOptions preset(const std::string& name);
  static const std::vector<std::string>& preset_names();
  /// ConfigError naming the field: the LoRA options, experts >= 2, a known causal router, k in [1, E].
  void validate() const;
  /// Every field, for adapter files; from_json(to_json()) gives the same options.
  nlohmann::json to_json() const;
  /// Throws ConfigError naming the field on a missing or ill-typed one.
  static LoraMixtureOptions from_json(const nlohmann::json& j);
};

/// Routing counts of one mixture, accumulated over the forwards made while tallying.
struct MixtureTally {
  int64_t tokens = 0;
  int64_t all_experts = 0;            ///< tokens that activated every expert
  double active = 0;                  ///< sum over tokens of |S_t|
  std::vector<double> expert_tokens;  ///< [E] tokens that activated expert i
  double all_fraction() const { return tokens ? static_cast<double>(all_experts) / tokens : 0; }
  double active_mean() const { return tokens ? active / tokens : 0; }
  /// expert_tokens / sum(expert_tokens): the share of assignments each expert received.
  std::vector<double> shares() const;
  void add(const MixtureTally& o);
};

/// One mixture of LoRA experts. Parameters: router_weight [E, in], lora_A [E, r, in],
/// lora_B [E, out, r].
class LoraMixtureImpl : public models::Adapter {
 public:
  LoraMixtureImpl(int64_t in_features, int64_t out_features, const LoraMixtureOptions& options);
  /// x [.., in] -> Delta(x) [.., out]. In training mode also sets aux_loss() (when a loss
  /// coefficient is non-zero) and applies dropout; while tallying, adds to tally().
  at::Tensor forward(const at::Tensor& x) override;
  double scaling() const { return options_.lora.alpha() / static_cast<double>(options_.lora.rank()); }
  const LoraMixtureOptions& options() const { return options_; }
  /// The weighted auxiliary losses of the last training forward (undefined before one).
  const at::Tensor& aux_loss() const { return aux_loss_; }
  /// The routing of the last forward (detached).
  const moe::Routing& last_routing() const { return last_; }
  void set_tallying(bool on) { tallying_ = on; }
  MixtureTally& tally() { return tally_; }
  void reset_tally();

  at::Tensor router_weight;  ///< [E, in]
  at::Tensor lora_A;         ///< [E, r, in]
  at::Tensor lora_B;         ///< [E, out, r]

 private:
  LoraMixtureOptions options_;
  at::Tensor aux_loss_;
  moe::Routing last_;
  bool tallying_ = false;
  MixtureTally tally_;
};

TORCH_MODULE(LoraMixture);

/// Attaches a new mixture to every projection whose HF name matches `pattern` (searched, as
/// attach_lora); returns the names. ConfigError for bad options, a bad or unmatched pattern.
std::vector<std::string> attach_lora_mixture(torch::nn::Module& model, const std::string& pattern,
                                             const LoraMixtureOptions& options);

/// Sum of the aux_loss() of every mixture of `lm` (from their last training forward); an
/// undefined tensor when none has one.
at::Tensor mixture_aux_loss(torch::nn::Module& model);

/// Turns tallying on or off in every mixture of `lm` and clears their tallies.
void set_tallying(torch::nn::Module& model, bool on);

/// The tally of every mixture of `lm`, by projection name (model order).
std::vector<std::pair<std::string, MixtureTally>> mixture_tallies(torch::nn::Module& model);

}  // namespace dynamoe::adapters
