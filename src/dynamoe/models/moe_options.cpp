#include "dynamoe/models/moe_options.h"

#include "dynamoe/dist/process_group.h"

namespace dynamoe::models {

moe::MoELayerOptions moe_layer_options(const config::MoEConfig& c, int64_t dim, int64_t n_experts, int64_t k_max,
                                       int64_t prev_experts) {
  moe::MoELayerOptions o;
  o.dim = dim;
  o.n_experts = n_experts;
  o.k_max = k_max;
  o.prev_experts = c.gate_residual ? prev_experts : 0;
  o.gate = c.gate;
  o.router = c.router;
  o.capacity_factor = c.capacity_factor;
  o.expert = c.experts.kind;
  o.expert_options = {dim, c.experts.hidden, c.experts.activation};
  o.n_zero = c.experts.n_zero;
  o.n_copy = c.experts.n_copy;
  o.n_constant = c.experts.n_constant;
  o.n_shared = c.experts.n_shared;
  o.kernel = c.kernel;
  o.precision = c.precision;
  // Expert parallelism applies only inside a launched run; one process (eval, generate) holds
  // every expert of a checkpoint saved at any P.
  if (c.expert_parallel > 1) o.expert_group = dist::expert_group();
  o.bias_balancing = c.bias_balancing;
  o.bias_gamma = c.bias_gamma;
  o.losses.load_balance = c.losses.load_balance;
  o.losses.z_loss = c.losses.z_loss;
  o.losses.entropy = c.losses.entropy;
  o.losses.tsallis = c.losses.tsallis;
  o.losses.tsallis_q = c.losses.tsallis_q;
  o.losses.tsallis_eps = c.losses.tsallis_eps;
  return o;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> experts_and_k_max(const config::MoEConfig& c, int64_t n_layers) {
  const config::MoEConfig::Layers& l = c.layers;
  const moe::ScheduleOptions so = moe::schedule_options(l.schedule, l.e_min, l.e_max, l.total_experts);
  std::vector<int64_t> experts = moe::schedule_experts(so, n_layers), k_max(n_layers, 0);
  if (l.k_max) k_max = moe::schedule_experts(moe::schedule_options(l.schedule, l.k_max_min, l.k_max_max, 0), n_layers);
  return {experts, k_max};
}

}  // namespace dynamoe::models
