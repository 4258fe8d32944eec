#include "dynamoe/moe/moe_layer.h"

#include <torch/torch.h>

#include <cmath>

#include "dynamoe/moe/dispatch.h"
#include "dynamoe/moe/grouped_experts.h"
#include "dynamoe/util/error.h"

namespace dynamoe::moe {

MoELayerOptions MoELayerOptions::from_config(const config::MoEConfig& c, int64_t dim, int64_t n_experts,
                                             int64_t k_max, int64_t prev_experts) {
  MoELayerOptions o;
  o.dim = dim;
  o.n_experts = n_experts;
  o.k_max = k_max;
  o.prev_experts = c.gate_residual ? prev_experts : 0;
  o.gate = c.gate;
  o.gate_options = {dim, n_experts, c.gate_bias, c.gate_rank, c.gate_mlp_mult};
  o.router = c.router;
  RouterOptions& r = o.router_options;
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

MoELayerImpl::MoELayerImpl(const MoELayerOptions& o) : o_(o) {
  const int64_t special = o.n_zero + o.n_copy + o.n_constant;
  if (o.n_experts < special)
    throw ConfigError(str("config: a layer with ", o.n_experts, " experts cannot hold moe.n_zero + moe.n_copy + ",
                          "moe.n_constant = ", special, " zero-computation experts (raise the layer's expert count)"));
  gate_ = register_module("gate", make_gate(o.gate, o.gate_options));
  torch::nn::ModuleList experts, shared;
  for (int64_t i = 0; i < o.n_experts; ++i) {
    const std::string kind = i < o.n_experts - special                         ? o.expert
                             : i < o.n_experts - o.n_zero - o.n_copy           ? std::string("constant")
                             : i < o.n_experts - o.n_zero                      ? std::string("copy")
                                                                               : std::string("zero");
    experts_.push_back(make_expert(kind, o.expert_options));
    experts->push_back(experts_.back());
  }
  register_module("experts", experts);
  if (grouped_supports(o.expert))  // the same tensor objects: .to(), optimizer steps and loads reach them
    for (int64_t i = 0; i < o.n_experts - special; ++i) {
      auto named = experts_[i]->named_parameters(/*recurse=*/false);
      for (const auto& n : grouped_param_names(o.expert)) grouped_params_.push_back(named[n]);
    }
  for (int64_t j = 0; j < o.n_shared; ++j) {
    shared_.push_back(make_expert(o.expert == "linear" ? "ffn" : o.expert, o.expert_options));
    shared->push_back(shared_.back());
  }
  if (o.n_shared > 0) register_module("shared", shared);
  if (o.prev_experts > 0)
    w_map_ = register_parameter("w_map", torch::zeros({o.n_experts, o.prev_experts}));
  if (o.bias_balancing) expert_bias_ = register_buffer("expert_bias", torch::zeros({o.n_experts}));
}

MoELayerOutput MoELayerImpl::forward(const at::Tensor& x, const at::Tensor& prev_logits, const at::Tensor& token_ids) {
  DYNAMOE_CHECK(x.dim() == 2 && x.size(1) == o_.dim, "MoE layer: expected input [N, ", o_.dim, "], got ", x.sizes());
  const int64_t N = x.size(0), E = o_.n_experts;
  MoELayerOutput out;

  // gate: [N, D] -> [N, E]
  at::Tensor z = gate_->forward(x);
  if (w_map_.defined()) {
    DYNAMOE_CHECK(prev_logits.defined() && prev_logits.size(1) == o_.prev_experts,
                  "MoE layer: the gating residual needs the previous layer's logits [N, ", o_.prev_experts, "]");
    z = z + prev_logits.mm(w_map_.t());  // [N, E]
  }
  out.logits = z;

  // route: [N, E] -> weights [N, E], mask [N, E]
  RouterContext ctx;
  ctx.training = is_training();
  ctx.k_max = o_.k_max;
  ctx.token_ids = token_ids;
  if (expert_bias_.defined()) ctx.selection_bias = expert_bias_;
  Routing& r = out.routing;
  r = route(o_.router, z, o_.router_options, ctx);
  const double cf = o_.router_options.capacity_factor;
  if (cf > 0 && o_.router != "expert_choice") {
    const int64_t assigned = r.mask.sum().item<int64_t>();
    r.assignments_before_capacity = assigned;
    apply_capacity(r, capacity_for(cf, N, static_cast<double>(assigned) / std::max<int64_t>(N, 1), E));
  }

  // dispatch: zero experts are left out entirely (their output is 0).
  const int64_t n_special = o_.n_zero + o_.n_copy + o_.n_constant, n_computing = E - n_special;
  at::Tensor computing_mask = r.mask;
  if (o_.n_zero > 0) {
    computing_mask = r.mask.clone();
    computing_mask.narrow(1, E - o_.n_zero, o_.n_zero).fill_(false);
  }
  const Dispatch d = plan_dispatch(computing_mask);
  const at::Tensor w = assignment_weights(r.weights, d);  // [A]
  const bool grouped = o_.kernel == "grouped" && grouped_supports(o_.expert);
  DYNAMOE_CHECK(grouped || o_.precision == "fp32", "MoE layer: moe.precision = ", o_.precision,
                " needs moe.kernel = grouped");
  const at::ScalarType compute = o_.precision == "bf16" ? at::kBFloat16 : x.scalar_type();
  // the special experts (copy, constant) take rows in x's dtype; alone, the grouped ones take bf16 directly
  const bool special_rows = d.size() > d.offsets[n_computing];
  const at::Tensor xs = dispatch(x, d, grouped && !special_rows ? compute : x.scalar_type());  // [A, D]

  // experts: each runs on its own contiguous block of rows.
  std::vector<at::Tensor> outs;  // blocks of [A, D], in row order
  double expert_flops = 0;
  int64_t first_loop_expert = 0;
  if (grouped) {
    for (int64_t e = 0; e < n_computing; ++e)
      expert_flops += static_cast<double>(d.count(e)) * experts_[e]->flops_per_token();
    const std::vector<int64_t> off(d.offsets.begin(), d.offsets.begin() + n_computing + 1);
    outs.push_back(grouped_experts(xs.narrow(0, 0, off.back()), off, grouped_params_,
                                   {o_.expert, o_.expert_options.activation, compute}));
    first_loop_expert = n_computing;
  }
  for (int64_t e = first_loop_expert; e < E; ++e) {
    const int64_t n = d.count(e);
    if (n == 0) continue;
    outs.push_back(experts_[e]->forward(xs.narrow(0, d.offsets[e], n)));  // [n_e, D]
    expert_flops += static_cast<double>(n) * experts_[e]->flops_per_token();
  }
  if (outs.size() > 1)  // blocks of mixed precision are joined in x's dtype
    for (auto& o : outs) o = o.to(x.scalar_type());

  // combine: [A, D] -> [N, D]
  at::Tensor y = outs.empty() ? torch::zeros_like(x) : combine(outs.size() == 1 ? outs[0] : torch::cat(outs, 0), w, d);
  double shared_flops = 0;
  for (const auto& s : shared_) {
    y = y + s->forward(x);
    shared_flops += static_cast<double>(N) * s->flops_per_token();
  }
  out.y = y;

  // losses
  AuxLosses aux = aux_losses(r, o_.losses);
  out.aux_loss = aux.total;

  // metrics
  torch::NoGradGuard no_grad;
  LayerStats& st = out.stats;
  st.tokens = N;
  st.n_experts = E;
  st.losses = aux.values;
  st.expert_flops = expert_flops;
  st.shared_flops = shared_flops;
  st.gate_flops = static_cast<double>(N) * gate_->flops_per_token();
  at::Tensor active = r.mask.sum(1);  // [N]
  st.active_mean = N ? active.to(torch::kDouble).mean().item<double>() : 0;
  at::Tensor hist = torch::bincount(active, {}, E + 1);
  st.active_hist.assign(hist.data_ptr<int64_t>(), hist.data_ptr<int64_t>() + E + 1);
  at::Tensor load = r.mask.sum(0).to(torch::kLong).contiguous();  // [E]
  st.expert_tokens.assign(load.data_ptr<int64_t>(), load.data_ptr<int64_t>() + E);
  at::Tensor loadd = load.to(torch::kDouble);
  const double mean_load = loadd.mean().item<double>();
  st.load_cv = mean_load > 0 ? loadd.std(/*unbiased=*/false).item<double>() / mean_load : 0;
  st.dropped = r.dropped;
  st.drop_rate = r.assignments_before_capacity > 0 ? double(r.dropped) / r.assignments_before_capacity : 0;
  at::Tensor p = r.probs.detach().to(torch::kDouble);
  at::Tensor token_entropy = -torch::special::xlogy(p, p).sum(1);  // [N] double
  st.entropy = N ? token_entropy.mean().item<double>() : 0;
  at::Tensor token_entropy_f = token_entropy.to(torch::kFloat).contiguous();
  st.token_entropy.assign(token_entropy_f.data_ptr<float>(), token_entropy_f.data_ptr<float>() + N);
  at::Tensor active_i32 = active.to(torch::kInt).contiguous();
  st.token_active.assign(active_i32.data_ptr<int32_t>(), active_i32.data_ptr<int32_t>() + N);
  if (r.h_norm.defined()) st.tsallis_h_norm = r.h_norm.to(torch::kDouble).mean().item<double>();
  if (is_training()) last_load_ = st.expert_tokens;
  return out;
}

void MoELayerImpl::update_bias() {
  if (!expert_bias_.defined() || last_load_.empty()) return;
  torch::NoGradGuard no_grad;
  double mean = 0;
  for (int64_t v : last_load_) mean += v;
  mean /= static_cast<double>(last_load_.size());
  auto b = expert_bias_.accessor<float, 1>();
  for (size_t i = 0; i < last_load_.size(); ++i) {
    const double diff = mean - static_cast<double>(last_load_[i]);
    b[i] += static_cast<float>(o_.bias_gamma * ((diff > 0) - (diff < 0)));
  }
}

}  // namespace dynamoe::moe
