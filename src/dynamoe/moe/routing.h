#pragma once
// Routing: what a router decides for a batch of tokens, and the router registry.
// Shape legend: N tokens, E experts of the layer.
//
//   TopPOptions opt;                         // the router's own options (routers/top_p.h)
//   Routing r = route("top_p", logits, opt, ctx);
//   // r.weights [N, E] (zero where inactive, differentiable w.r.t. logits), r.mask [N, E]
//
// Every router is a pure function of (logits, its options, context) in routers/<name>.{h,cpp},
// registered there by name with its options struct and traits (one DYNAMOE_REGISTER line);
// capacity limits are applied afterwards by apply_capacity(), the same for every token-choice
// router. docs/moe.md "Adding a router" is the recipe.
//
// Routers with a controller (docs/methods.md section 9: dtop_p, relu, dynamoe scope batch) also
// declare their state (scalars the MoE layer holds as buffers router.<name>) and an update rule
// that the layer applies after each training step to what the training forwards observed.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dynamoe/util/error.h"
#include "dynamoe/util/options.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

/// A router's controller state: scalar tensors by name (the MoE layer's buffers router.<name>,
/// or parameters for the learnable ones).
using RouterState = std::map<std::string, at::Tensor>;

/// One scalar of a router's state.
struct RouterStateSpec {
  std::string name;
  double initial = 0;
  bool learnable = false;  ///< a parameter trained with the model (else a buffer)
};

/// What the training forward passes since the last step observed, over the whole batch (summed
/// over the processes that share it): the input of a controller's update.
struct RouterFeedback {
  double tokens = 0;       ///< tokens routed
  double assignments = 0;  ///< active (token, expert) pairs the router chose, before capacity
  int64_t n_experts = 0;   ///< E
  std::vector<double> thresholds;  ///< dynamoe scope batch: each forward's batch threshold t, in order
  bool empty() const { return tokens == 0 && thresholds.empty(); }
};

/// A loss a router adds to the layer's auxiliary loss (relu: the L1 regulariser):
/// coefficient * (batch mean of per_token), reported unweighted under `name`.
struct RouterPenalty {
  std::string name;
  at::Tensor per_token;    ///< [N], differentiable
  double coefficient = 0;  ///< from the router's state (a constant for autograd)
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
  /// The router's controller state (routers that declare one; must then be set).
  const RouterState* state = nullptr;
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
  RouterPenalty penalty;  ///< a loss of the router's own (relu), else per_token undefined
  double batch_threshold = 0;  ///< dynamoe scope batch in training: the batch's threshold t
  bool has_batch_threshold = false;
};

/// What the MoE layer needs to know about a router besides its function.
struct RouterTraits {
  bool causal = true;            ///< decides each token from that token alone (false: expert_choice)
  bool own_capacity = false;     ///< sets its own per-expert capacity (moe.capacity_factor does not apply)
  bool needs_token_ids = false;  ///< routes by token id: the layer must be given token_ids (hash)
};

/// A registered router: default options, the routing function and its traits.
struct RouterKind {
  std::function<std::shared_ptr<KindOptions>()> defaults;
  std::function<Routing(const at::Tensor& logits, const KindOptions& opt, const RouterContext& ctx)> route;
  RouterTraits traits;
  /// Active experts per token when the options fix it (top_k: min(k, E)); null, or a negative
  /// value for these options, when it varies.
  std::function<double(const KindOptions& opt, int64_t n_experts)> active_per_token;
  /// The controller state the options call for (null or empty: stateless).
  std::function<std::vector<RouterStateSpec>(const KindOptions& opt, int64_t n_experts)> state;
  /// The controller's update after a training step (only called with a non-empty feedback).
  std::function<void(const KindOptions& opt, RouterState& state, const RouterFeedback& seen)> update;
};

/// The router registry (routers register themselves in routers/*.cpp).
Registry<RouterKind>& router_registry();

/// A RouterKind from a typed routing function: fn(logits, const Options&, ctx).
template <class Options>
RouterKind router_kind(Routing (*fn)(const at::Tensor&, const Options&, const RouterContext&), RouterTraits traits,
                       double (*active)(const Options&, int64_t n_experts) = nullptr) {
  std::function<double(const KindOptions&, int64_t)> per_token;
  if (active)
    per_token = [active](const KindOptions& o, int64_t e) { return active(dynamic_cast<const Options&>(o), e); };
  return {[] { return std::static_pointer_cast<KindOptions>(std::make_shared<Options>()); },
          [fn](const at::Tensor& z, const KindOptions& o, const RouterContext& c) {
            const auto* typed = dynamic_cast<const Options*>(&o);
            DYNAMOE_CHECK(typed != nullptr, "internal: a router was given another router's options");
            return fn(z, *typed, c);
          },
          traits, per_token, /*state=*/{}, /*update=*/{}};
}

/// Adds a controller to a RouterKind made by router_kind: state(opt, E) and update(opt, state, seen).
template <class Options>
RouterKind with_controller(RouterKind kind, std::vector<RouterStateSpec> (*state)(const Options&, int64_t n_experts),
                           void (*update)(const Options&, RouterState&, const RouterFeedback&)) {
  kind.state = [state](const KindOptions& o, int64_t e) { return state(dynamic_cast<const Options&>(o), e); };
  kind.update = [update](const KindOptions& o, RouterState& s, const RouterFeedback& f) {
    update(dynamic_cast<const Options&>(o), s, f);
  };
  return kind;
}

/// Routes with the router called `name` and its options; an unknown name is a ConfigError
/// listing the valid names.
Routing route(const std::string& name, const at::Tensor& logits, const KindOptions& opt, const RouterContext& ctx);
/// The default options of the router called `name`.
KindChoice router_choice(const std::string& name);
/// Every registered router name, sorted.
std::vector<std::string> router_names();
/// The traits of the router called `name`.
RouterTraits router_traits(const std::string& name);
/// Whether a router decides each token from that token alone (false for expert_choice).
bool router_is_causal(const std::string& name);
/// The controller state of a router with these options in a layer of n_experts (empty: none).
std::vector<RouterStateSpec> router_state_specs(const KindChoice& router, int64_t n_experts);
/// Applies the router's controller update to `state` (nothing for a stateless router or an
/// empty feedback).
void update_router_state(const KindChoice& router, RouterState& state, const RouterFeedback& seen);

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
/// The scalar `name` of ctx.state as a double; an Error naming the router when it is missing.
double state_value(const RouterContext& ctx, const std::string& name, const char* router);

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
