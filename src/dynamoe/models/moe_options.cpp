#include "dynamoe/models/moe_options.h"

namespace dynamoe::models {

moe::MoELayerOptions moe_layer_options(const config::MoEConfig& c, int64_t dim, int64_t n_experts, int64_t k_max,
                                       int64_t prev_experts) {
  moe::MoELayerOptions o;
  o.dim = dim;
  o.n_experts = n_experts;
  o.k_max = k_max;
  o.prev_experts = c.gate_residual ? prev_experts : 0;
  o.gate = c.gate;
  o.gate_options = {dim, n_experts, c.gate_bias, c.gate_rank, c.gate_mlp_mult};
  o.router = c.router;
  moe::RouterOptions& r = o.router_options;
  r.temperature = c.temperature;
  r.k = c.k;
  r.top_k_normalize = c.top_k_normalize;
  r.top_p = c.top_p;
  r.top_p_min_k = c.top_p_min_k;
  r.top_p_max_k = c.top_p_max_k;
  r.top_p_normalize = c.top_p_normalize;
  r.theta = c.theta;
  r.threshold_normalize = c.threshold_normalize;
  r.dynamoe_temperature = c.dynamoe_temperature;
  r.dynamoe_sigma = c.dynamoe_sigma;
  r.dynamoe_tau = c.dynamoe_tau;
  r.tsallis_q = c.tsallis_q;
  r.tsallis_top_p = c.tsallis_top_p;
  r.tsallis_keep_top_k = c.tsallis_keep_top_k;
  r.tsallis_threshold = c.tsallis_threshold;
  r.tsallis_eps = c.tsallis_eps;
  r.expert_choice_capacity = c.expert_choice_capacity;
  r.capacity_factor = c.capacity_factor;
  o.expert = c.expert;
  o.expert_options = {dim, c.expert_hidden, c.expert_activation};
  o.n_zero = c.n_zero;
  o.n_copy = c.n_copy;
  o.n_constant = c.n_constant;
  o.n_shared = c.n_shared;
  o.kernel = c.kernel;
  o.precision = c.precision;
  o.bias_balancing = c.bias_balancing;
  o.bias_gamma = c.bias_gamma;
  o.losses.load_balance = c.load_balance;
  o.losses.z_loss = c.z_loss;
  o.losses.entropy = c.entropy;
  o.losses.tsallis = c.tsallis;
  o.losses.tsallis_q = c.tsallis_q;
  o.losses.tsallis_eps = c.tsallis_eps;
  return o;
}

}  // namespace dynamoe::models
