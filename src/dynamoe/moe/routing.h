#pragma once
// Routing: what a router decides for a batch of tokens, and the router registry.
// Shape legend: N tokens, E experts of the layer.
//
//   RouterOptions opt;                       // per-router options, defaults of docs/methods.md
//   Routing r = route("top_p", logits, opt, ctx);
//   // r.weights [N, E] (zero where inactive, differentiable w.r.t. logits), r.mask [N, E]
//
// Every router is a pure function of (logits, options, context); capacity limits are applied
// afterwards by apply_capacity(), the same for every token-choice router.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dynamoe::moe {

/// Options of every router (defaults: docs/methods.md section 2).
struct RouterOptions {
  double temperature = 1.0;  ///< p = softmax(z / T) for top_k, top_p, threshold, expert_choice
  // top_k
  int64_t k = 2;
  bool top_k_normalize = true;  ///< Mixtral (true) / Switch (false)
  // top_p
  double top_p = 0.4;
  int64_t top_p_min_k = 1;
  int64_t top_p_max_k = 0;  ///< 0: E
  bool top_p_normalize = false;
  // threshold
  double theta = 0.1;
  bool threshold_normalize = false;
  // dynamoe
  double dynamoe_temperature = 0.5;
  double dynamoe_sigma = 0.1;  ///< std of the Gaussian noise added to g in training
  double dynamoe_tau = 0.5;    ///< quantile level
  // tsallis_hybrid (DynMoLE)
  double tsallis_q = 1.1;
  double tsallis_top_p = 0.75;
  int64_t tsallis_keep_top_k = 2;
  double tsallis_threshold = 0.9;
  double tsallis_eps = 1e-5;
  // expert_choice
  double expert_choice_capacity = 1.0;  ///< C = ceil(capacity * N * k / E)
  // common
  double capacity_factor = 0.0;  ///< 0: dropless; else expert i keeps <= ceil(cf * N * k_mean / E)
};

/// Per-call context.
struct RouterContext {
  bool training = false;
  int64_t k_max = 0;                ///< the layer's cap on active experts for dynamoe/top_p (0: none)
  at::Tensor token_ids;             ///< [N] int64, needed by the hash router
  /// [E] per-expert bias b for SELECTION only (aux-loss-free balancing, DeepSeek-V3); may be undefined.
  /// top_k, top_p, threshold, dynamoe and tsallis_hybrid choose their active set from the biased
  /// logits z + b (e.g. top_p thresholds softmax((z + b) / T)), while the weights still come from
  /// the unbiased p = softmax(z / T) (top_k normalised: p_S / sum p_S of the unbiased p).
  /// expert_choice, hash and random ignore it (their load is fixed by construction).
  at::Tensor selection_bias;
  std::optional<at::Generator> generator;  ///< for noise and random routing (default: the global CPU generator)
};

/// A router's decision.
struct Routing {
  at::Tensor logits;   ///< [N, E] gate logits z
  at::Tensor probs;    ///< [N, E] the router's probabilities (softmax(z / T); for dynamoe the noisy g)
  at::Tensor weights;  ///< [N, E] w_{t,i}; zero outside the active set; differentiable w.r.t. logits
  at::Tensor mask;     ///< [N, E] bool: the active set S_t
  at::Tensor h_norm;   ///< [N] normalised Tsallis entropy (tsallis_hybrid only, else undefined)
  int64_t dropped = 0; ///< assignments removed by the capacity limit
  int64_t assignments_before_capacity = 0;
};

using RouterFn = std::function<Routing(const at::Tensor& logits, const RouterOptions&, const RouterContext&)>;

/// What the MoE layer needs to know about a router besides its function.
struct RouterTraits {
  bool causal = true;            ///< decides each token from that token alone (false: expert_choice)
  bool own_capacity = false;     ///< sets its own per-expert capacity (moe capacity_factor does not apply)
  bool needs_token_ids = false;  ///< routes by token id: the layer must be given token_ids (hash)
};

/// Registers a router under `name` (an Error if the name is taken). The built-in routers of
/// routers/*.h are registered on first use of the registry.
void register_router(const std::string& name, RouterFn fn, RouterTraits traits = {});
/// The traits of the router called `name`; an unknown name is a ConfigError listing valid names.
RouterTraits router_traits(const std::string& name);
/// Routes with the router called `name`; an unknown name is a ConfigError listing valid names.
Routing route(const std::string& name, const at::Tensor& logits, const RouterOptions& opt, const RouterContext& ctx);
/// Every registered router name, sorted.
std::vector<std::string> router_names();
/// Whether a router decides each token from that token alone (false for expert_choice).
bool router_is_causal(const std::string& name);

namespace functional {
// Helpers shared by the routers in routers/*.cpp.

/// Throws dynamoe::Error unless logits is a floating [N, E] tensor with E >= 1.
void check_logits(const at::Tensor& logits, const char* router);
/// The logits the active set is chosen from: z + selection_bias when ctx has one, else z;
/// detached (selection is piecewise constant). [N, E]
at::Tensor selection_logits(const at::Tensor& logits, const RouterContext& ctx);
/// The rank of each entry in its row when the row is sorted descending (0 = largest), ties
/// broken by lower index first. Used to keep "the largest m" of a set. [N, E] int64
at::Tensor descending_ranks(const at::Tensor& scores);
/// Assembles a Routing and sets assignments_before_capacity to the number of true entries of mask.
Routing make_routing(at::Tensor logits, at::Tensor probs, at::Tensor weights, at::Tensor mask);

}  // namespace functional

/// Keeps, for each expert, at most `capacity` of its assignments, highest weight first (ties:
/// lower token index first); zeroes the rest in weights and mask, and counts them in dropped.
/// The kept weights are not renormalised (Switch). capacity >= N is a no-op; capacity < 0 is an Error.
void apply_capacity(Routing& r, int64_t capacity);
/// ceil(cf * N * k_mean / E), the capacity rule of docs/methods.md section 2.10 (k_mean: mean active experts per token,
/// e.g. assignments_before_capacity / N for the dynamic routers). The ceiling forgives a relative
/// rounding error of 1e-9 (1.1 * 10 / 11 gives 1, not 2), and the result is at least 1 when cf > 0.
/// cf <= 0 means dropless and returns n_tokens, a capacity no expert can exceed.
int64_t capacity_for(double capacity_factor, int64_t n_tokens, double k_mean, int64_t n_experts);

}  // namespace dynamoe::moe
