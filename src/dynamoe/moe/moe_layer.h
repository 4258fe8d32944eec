#pragma once
// MoELayer: gate -> route -> dispatch -> experts -> combine -> losses and metrics.
// Shape legend: N tokens, D width, E experts of this layer, A active assignments.
//   MoELayer layer(models::moe_layer_options(cfg.moe, /*dim=*/64, /*n_experts=*/8));  // models/moe_options.h
//   MoELayerOutput o = layer->forward(x);   // o.y [N, D], o.aux_loss scalar, o.stats
// Parameters: gate.*, experts.{i}.*, shared.{j}.*, w_map (gating residual); buffer expert_bias
// (aux-loss-free balancing); router.* the router's controller state (buffers, and router.gamma
// of dtop_p a parameter; docs/methods.md section 9). Experts 0 .. E-1 are: the computing experts (moe.experts.kind),
// then constant, copy and zero experts (MoE++).
//
// Expert parallelism (MoELayerOptions.expert_group of P processes): process q holds the
// computing experts [Ec q / P, Ec (q + 1) / P) (registered under their global names
// experts.{i}); after dispatch each rank's rows go to their expert's rank by all-to-all, the
// experts run there, and the rows come back before combine (autograd runs the exchanges
// backwards). Gate, shared and zero/copy/constant experts stay on every rank.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <string>
#include <vector>

#include "dynamoe/moe/dispatch.h"
#include "dynamoe/moe/expert.h"
#include "dynamoe/moe/gate.h"
#include "dynamoe/moe/layer_stats.h"
#include "dynamoe/moe/losses.h"
#include "dynamoe/moe/routing.h"

namespace dynamoe::dist {
class ProcessGroup;
}

namespace dynamoe::moe {

struct MoELayerOptions {
  int64_t dim = 0;            ///< D
  int64_t n_experts = 0;      ///< E (routed experts, special ones included)
  int64_t k_max = 0;          ///< this layer's cap on active experts (0: none)
  int64_t prev_experts = 0;   ///< E of the previous MoE layer when the gating residual is on (else 0)
  KindChoice gate = gate_choice("linear");     ///< gate kind and its options (gates: gate.h)
  KindChoice router = router_choice("top_k");  ///< router and its options (routers/*.h)
  double capacity_factor = 0.0;  ///< token-choice routers: expert i keeps <= ceil(cf * N * k_mean / E) (0: dropless)
  std::string expert = "ffn";
  ExpertOptions expert_options;  ///< dim, hidden, activation of the computing and shared experts
  int64_t n_zero = 0, n_copy = 0, n_constant = 0, n_shared = 0;
  std::string kernel = "grouped";  ///< grouped | loop (see moe.kernel)
  std::string precision = "fp32";  ///< fp32 | bf16 (see moe.precision)
  bool bias_balancing = false;
  double bias_gamma = 1e-3;
  LossCoefficients losses;
  /// Expert parallelism: the processes that split this layer's computing experts between them
  /// (every one of them must call forward with its own tokens); nullptr or 1 process: all here.
  dist::ProcessGroup* expert_group = nullptr;
};

struct MoELayerOutput {
  at::Tensor y;         ///< [N, D] sum_i w_i Expert_i(x) (+ shared experts); no residual
  at::Tensor aux_loss;  ///< scalar: weighted sum of the enabled auxiliary losses
  at::Tensor logits;    ///< [N, E] gate logits (for the next layer's gating residual)
  Routing routing;
  LayerStats stats;
};

class MoELayerImpl : public torch::nn::Module {
 public:
  explicit MoELayerImpl(const MoELayerOptions& o);
  /// x [N, D]; prev_logits [N, E_prev] when the gating residual is on; token_ids [N] for hash routing.
  MoELayerOutput forward(const at::Tensor& x, const at::Tensor& prev_logits = {}, const at::Tensor& token_ids = {});
  /// Call after each optimizer step: aux-loss-free balancing (b_i += gamma * sign(mean_load -
  /// load_i) from the last training forward's loads) and the router's controller update from
  /// the training forwards since the previous call; nothing for what is disabled.
  void after_step();
  /// The router's controller state by name (empty for a stateless router).
  RouterState router_state() const;
  const MoELayerOptions& options() const { return o_; }
  /// Expert i, or an empty holder for a computing expert held by another process.
  const std::vector<Expert>& experts() const { return experts_; }
  /// The computing experts [first, last) this process holds (all of them without expert parallelism).
  std::pair<int64_t, int64_t> local_experts() const { return {ep_first_, ep_last_}; }

 private:
  at::Tensor gate_logits(const at::Tensor& x, const at::Tensor& prev_logits);
  Routing route_tokens(const at::Tensor& z, const at::Tensor& token_ids);
  at::Tensor computing_mask(const at::Tensor& mask) const;
  at::Tensor run_experts(const at::Tensor& xs, const Dispatch& d, double& expert_flops);
  /// The computing experts ep_first_ .. ep_last_ on rows grouped by them (offsets relative to xs).
  at::Tensor run_local_experts(const at::Tensor& xs, const std::vector<int64_t>& offsets);
  /// Expert parallelism: rows of the computing experts go to their ranks and come back.
  at::Tensor exchange_and_run(const at::Tensor& xs, const Dispatch& d);
  at::Tensor add_shared_experts(at::Tensor y, const at::Tensor& x, double& shared_flops);
  void update_bias();
  void record_feedback(const Routing& r, int64_t n_tokens);

  MoELayerOptions o_;
  // Resolved once at construction from the option strings.
  RouterTraits router_traits_;
  bool grouped_ = false;            ///< the computing experts run as one grouped node
  at::ScalarType compute_dtype_{};  ///< expert GEMM dtype (bf16 precision), else undefined (x's)
  int64_t n_special_ = 0;           ///< zero + copy + constant experts (the last of the E)
  int64_t ep_first_ = 0, ep_last_ = 0;  ///< computing experts held here
  double computing_flops_ = 0;          ///< FLOPs per token of one computing expert
  Gate gate_;
  std::vector<Expert> experts_, shared_;
  std::vector<at::Tensor> grouped_params_;  ///< the computing experts' parameters in grouped_experts order
  at::Tensor w_map_, expert_bias_;
  std::vector<int64_t> last_load_;
  std::shared_ptr<torch::nn::Module> router_state_;  ///< holds router.* (null: a stateless router)
  RouterFeedback feedback_;                          ///< seen by training forwards since after_step()
};
TORCH_MODULE(MoELayer);

}  // namespace dynamoe::moe
