#include "dynamoe/moe/moe_layer.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "dynamoe/dist/all_to_all.h"
#include "dynamoe/dist/batch_group.h"
#include "dynamoe/dist/process_group.h"
#include "dynamoe/moe/grouped_experts.h"
#include "dynamoe/util/error.h"

namespace dynamoe::moe {
namespace {

bool any_requires_grad(const std::vector<at::Tensor>& params) {
  for (const auto& p : params)
    if (p.requires_grad()) return true;
  return false;
}

/// Tokens per expert over the whole batch (summed over the processes that share it).
std::vector<int64_t> batch_loads(const std::vector<int64_t>& local) {
  if (!dist::batch_group()) return local;
  at::Tensor t = torch::tensor(local, torch::kInt64);
  dist::batch_sum_(t);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

/// apply_capacity over a batch split between processes: the capacity comes from the whole
/// batch's tokens and assignments, and each expert keeps its `capacity` highest-weight tokens
/// of the whole batch (ties: the earlier token), exactly as one process holding it would.
void apply_batch_capacity(Routing& r, double cf, int64_t n_experts) {
  const at::Tensor score = r.weights.detach().to(at::kDouble).masked_fill(
      r.mask.logical_not(), -std::numeric_limits<double>::infinity());  // [n, E]
  const at::Tensor all = dist::batch_gather_rows(score);                  // [N, E]
  const int64_t n = score.size(0), offset = dist::batch_row_offset(n), N = all.size(0);
  at::Tensor before = torch::tensor({r.assignments_before_capacity}, torch::kInt64);
  dist::batch_sum_(before);
  const double k_mean = static_cast<double>(before.item<int64_t>()) / static_cast<double>(std::max<int64_t>(N, 1));
  const int64_t capacity = capacity_for(cf, N, k_mean, n_experts);
  if (capacity >= N) return;
  const at::Tensor rank = functional::descending_ranks(all.t().contiguous()).t();  // [N, E]
  const at::Tensor keep = r.mask.logical_and(rank.narrow(0, offset, n) < capacity);  // [n, E]
  r.dropped += r.mask.sum().item<int64_t>() - keep.sum().item<int64_t>();
  r.weights = r.weights.masked_fill(keep.logical_not(), 0);
  r.mask = keep;
}

}  // namespace

MoELayerImpl::MoELayerImpl(const MoELayerOptions& o) : o_(o) {
  n_special_ = o.n_zero + o.n_copy + o.n_constant;
  if (o.n_experts < n_special_)
    throw ConfigError(str("config: a layer with ", o.n_experts, " experts cannot hold moe.n_zero + moe.n_copy + ",
                          "moe.n_constant = ", n_special_, " zero-computation experts (raise the layer's expert count)"));
  router_traits_ = router_traits(o.router.kind());  // an unknown router fails here, before any forward
  DYNAMOE_CHECK(o.kernel == "grouped" || o.kernel == "loop", "MoE layer: moe.kernel = '", o.kernel,
                "' is not one of: grouped | loop");
  DYNAMOE_CHECK(o.precision == "fp32" || o.precision == "bf16", "MoE layer: moe.precision = '", o.precision,
                "' is not one of: fp32 | bf16");
  grouped_ = o.kernel == "grouped" && grouped_supports(o.expert);
  DYNAMOE_CHECK(grouped_ || o.precision == "fp32", "MoE layer: moe.precision = ", o.precision,
                " needs moe.kernel = grouped");
  compute_dtype_ = o.precision == "bf16" ? at::kBFloat16 : at::ScalarType::Undefined;
  gate_ = register_module("gate", make_gate(o.gate, o.dim, o.n_experts));
  const int64_t n_computing = o.n_experts - n_special_;
  const int P = o.expert_group ? o.expert_group->size() : 1, q = o.expert_group ? o.expert_group->rank() : 0;
  // Rank q holds computing experts [n q / P, n (q + 1) / P): none when a layer has fewer than P.
  ep_first_ = n_computing * q / P;
  ep_last_ = n_computing * (q + 1) / P;
  // Every expert is built (the seeded initialisation is the same at any P); with expert
  // parallelism only this rank's computing experts are kept, under their global index.
  torch::nn::ModuleList experts, shared;
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> local_experts;
  for (int64_t i = 0; i < o.n_experts; ++i) {
    const std::string kind = i < n_computing                                   ? o.expert
                             : i < o.n_experts - o.n_zero - o.n_copy           ? std::string("constant")
                             : i < o.n_experts - o.n_zero                      ? std::string("copy")
                                                                               : std::string("zero");
    Expert e = make_expert(kind, o.expert_options);
    if (i < n_computing) computing_flops_ = e->flops_per_token();
    const bool here = i >= n_computing || (i >= ep_first_ && i < ep_last_);
    experts_.push_back(here ? e : Expert(nullptr));
    if (P == 1) experts->push_back(e);
    else if (here) local_experts.emplace_back(std::to_string(i), e);
  }
  if (P == 1) register_module("experts", experts);
  else register_module("experts", torch::nn::ModuleDict(local_experts));
  if (grouped_)  // the same tensor objects: .to(), optimizer steps and loads reach them
    for (int64_t i = ep_first_; i < ep_last_; ++i) {
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
  const std::vector<RouterStateSpec> state = router_state_specs(o.router, o.n_experts);
  if (!state.empty()) {
    router_state_ = register_module("router", std::make_shared<torch::nn::Module>("RouterState"));
    for (const auto& s : state) {
      if (s.learnable) router_state_->register_parameter(s.name, torch::full({}, s.initial));
      else router_state_->register_buffer(s.name, torch::full({}, s.initial));
    }
    feedback_.n_experts = o.n_experts;
  }
}

MoELayerOutput MoELayerImpl::forward(const at::Tensor& x, const at::Tensor& prev_logits, const at::Tensor& token_ids) {
  DYNAMOE_CHECK(x.dim() == 2 && x.size(1) == o_.dim, "MoE layer: expected input [N, ", o_.dim, "], got ", x.sizes());
  MoELayerOutput out;
  // 1. gate: x [N, D] -> logits z [N, E]
  out.logits = gate_logits(x, prev_logits);
  // 2. route: z -> weights and active mask [N, E] (capacity applied)
  out.routing = route_tokens(out.logits, token_ids);
  const Routing& r = out.routing;
  // 3. dispatch: the computing experts' assignments grouped by expert -> xs [A, D], w [A]
  const Dispatch d = plan_dispatch(computing_mask(r.mask));
  const at::Tensor w = assignment_weights(r.weights, d);
  const bool only_grouped = grouped_ && d.size() == d.offsets[o_.n_experts - n_special_];
  const at::ScalarType in_dtype = only_grouped && compute_dtype_ != at::ScalarType::Undefined ? compute_dtype_
                                                                                               : x.scalar_type();
  const at::Tensor xs = dispatch(x, d, in_dtype);
  // 4. experts: each on its own contiguous block of rows -> [A, D]
  double expert_flops = 0, shared_flops = 0;
  const at::Tensor ys = run_experts(xs, d, expert_flops);
  // 5. combine: sum_i w_{t,i} Expert_i(x_t) [A, D] -> [N, D], plus the shared experts
  out.y = ys.defined() ? combine(ys, w, d) : torch::zeros_like(x);
  out.y = add_shared_experts(out.y, x, shared_flops);
  // 6. auxiliary losses and statistics
  AuxLosses aux = aux_losses(r, o_.losses);
  out.aux_loss = aux.total;
  const double gate_flops = static_cast<double>(x.size(0)) * gate_->flops_per_token();
  out.stats = layer_stats(r, {expert_flops, shared_flops, gate_flops}, std::move(aux.values));
  for (const auto& [name, t] : router_state()) out.stats.router_state[name] = t.item<double>();
  if (is_training() && expert_bias_.defined()) last_load_ = batch_loads(out.stats.expert_tokens);
  return out;
}

at::Tensor MoELayerImpl::gate_logits(const at::Tensor& x, const at::Tensor& prev_logits) {
  at::Tensor z = gate_->forward(x);  // [N, E]
  if (!w_map_.defined()) return z;
  DYNAMOE_CHECK(prev_logits.defined() && prev_logits.dim() == 2 && prev_logits.size(1) == o_.prev_experts,
                "MoE layer: the gating residual needs the previous layer's logits [N, ", o_.prev_experts, "]");
  return z + prev_logits.mm(w_map_.t());  // [N, E]
}

Routing MoELayerImpl::route_tokens(const at::Tensor& z, const at::Tensor& token_ids) {
  DYNAMOE_CHECK(!router_traits_.needs_token_ids || token_ids.defined(), "MoE layer: moe.router.kind = '", o_.router.kind(),
                "' routes by token id, and this model gives the layer none (use it in a language model)");
  RouterContext ctx;
  ctx.training = is_training();
  ctx.k_max = o_.k_max;
  ctx.token_ids = token_ids;
  if (expert_bias_.defined()) ctx.selection_bias = expert_bias_;
  const RouterState state = router_state();
  if (router_state_) ctx.state = &state;
  Routing r = route(o_.router.kind(), z, o_.router.options(), ctx);
  if (router_state_ && ctx.training) record_feedback(r, z.size(0));
  const double cf = o_.capacity_factor;
  if (cf > 0 && !router_traits_.own_capacity) {
    if (dist::batch_group()) {
      apply_batch_capacity(r, cf, o_.n_experts);
    } else {
      const int64_t N = z.size(0);
      const double k_mean = static_cast<double>(r.assignments_before_capacity) / static_cast<double>(std::max<int64_t>(N, 1));
      apply_capacity(r, capacity_for(cf, N, k_mean, o_.n_experts));
    }
  }
  return r;
}

at::Tensor MoELayerImpl::computing_mask(const at::Tensor& mask) const {
  if (o_.n_zero == 0) return mask;
  // Zero experts are left out of the dispatch entirely: their output is 0.
  at::Tensor m = mask.clone();
  m.narrow(1, o_.n_experts - o_.n_zero, o_.n_zero).fill_(false);
  return m;
}

at::Tensor MoELayerImpl::run_experts(const at::Tensor& xs, const Dispatch& d, double& expert_flops) {
  const int64_t n_computing = o_.n_experts - n_special_;
  const bool parallel = ep_last_ - ep_first_ < n_computing;
  std::vector<at::Tensor> outs;  // blocks of [n, D], in row order
  int64_t first_loop_expert = 0;
  if (grouped_ || parallel) {
    const std::vector<int64_t> off(d.offsets.begin(), d.offsets.begin() + n_computing + 1);
    const at::Tensor rows = xs.narrow(0, 0, off.back());
    outs.push_back(parallel ? exchange_and_run(rows, d) : run_local_experts(rows, off));
    // FLOPs are counted where the tokens are (the same at any expert-parallel size).
    for (int64_t e = 0; e < n_computing; ++e) expert_flops += static_cast<double>(d.count(e)) * computing_flops_;
    first_loop_expert = n_computing;
  }
  for (int64_t e = first_loop_expert; e < o_.n_experts; ++e) {
    const int64_t n = d.count(e);
    if (n == 0) continue;
    outs.push_back(experts_[e]->forward(xs.narrow(0, d.offsets[e], n)));  // [n, D]
    expert_flops += static_cast<double>(n) * experts_[e]->flops_per_token();
  }
  if (outs.empty()) return {};
  if (outs.size() == 1) return outs[0];
  // Several blocks mean rows for special or loop experts, so xs is in x's dtype: join in it
  // (the grouped block may be fp32 from bf16 GEMMs).
  for (auto& o : outs) o = o.to(xs.scalar_type());
  return torch::cat(outs, 0);
}

at::Tensor MoELayerImpl::run_local_experts(const at::Tensor& xs, const std::vector<int64_t>& offsets) {
  if (grouped_) {
    const at::ScalarType compute = compute_dtype_ != at::ScalarType::Undefined ? compute_dtype_ : xs.scalar_type();
    return grouped_experts(xs, offsets, grouped_params_, {o_.expert, o_.expert_options.activation, compute});
  }
  std::vector<at::Tensor> outs;
  for (int64_t j = 0; j + 1 < static_cast<int64_t>(offsets.size()); ++j) {
    const int64_t n = offsets[j + 1] - offsets[j];
    if (n > 0) outs.push_back(experts_[ep_first_ + j]->forward(xs.narrow(0, offsets[j], n)));  // [n, D]
  }
  if (outs.empty()) return xs.narrow(0, 0, 0);
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
}

at::Tensor MoELayerImpl::exchange_and_run(const at::Tensor& xs, const Dispatch& d) {
  dist::ProcessGroup& g = *o_.expert_group;
  const int P = g.size();
  const int64_t n_computing = o_.n_experts - n_special_, held = ep_last_ - ep_first_;
  auto first = [&](int q) { return n_computing * q / P; };
  // 1. counts: rank q learns how many rows of each of its experts every rank sends.
  std::vector<int64_t> send_rows(P, 0), send_counts, count_splits(P), recv_splits(P, held);
  for (int q = 0; q < P; ++q) {
    for (int64_t e = first(q); e < first(q + 1); ++e) {
      send_counts.push_back(d.count(e));
      send_rows[q] += d.count(e);
    }
    count_splits[q] = first(q + 1) - first(q);
  }
  const at::Tensor got = g.alltoall(torch::tensor(send_counts, torch::kInt64), count_splits, recv_splits);  // [P * held]
  const int64_t* c = got.data_ptr<int64_t>();
  std::vector<int64_t> recv_rows(P, 0), src_start(P + 1, 0);
  for (int s = 0; s < P; ++s) {
    for (int64_t j = 0; j < held; ++j) recv_rows[s] += c[s * held + j];
    src_start[s + 1] = src_start[s] + recv_rows[s];
  }
  // 2. rows out: received grouped by source rank, then by expert.
  const at::Tensor recv = dist::all_to_all(g, xs, send_rows, recv_rows);  // [R, D]
  // 3. regroup by expert (then source), run this rank's experts, and restore the order.
  std::vector<int64_t> perm, offsets{0}, cursor(src_start.begin(), src_start.end() - 1);
  perm.reserve(static_cast<size_t>(src_start[P]));
  for (int64_t j = 0; j < held; ++j) {
    for (int s = 0; s < P; ++s) {
      const int64_t n = c[s * held + j];
      for (int64_t t = 0; t < n; ++t) perm.push_back(cursor[s] + t);
      cursor[s] += n;
    }
    offsets.push_back(static_cast<int64_t>(perm.size()));
  }
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  at::Tensor back;
  if (held == 0) {
    back = recv.narrow(0, 0, 0);  // no experts of this layer here (fewer than P): nothing arrives
  } else {
    const at::Tensor ys = run_local_experts(recv.index_select(0, torch::tensor(perm, torch::kInt64)), offsets);
    back = ys.index_select(0, torch::tensor(inverse, torch::kInt64));  // [R, D] by source
  }
  // Every rank must join the backward exchange, also one whose experts received no rows or that
  // holds none (its empty block is not connected to any parameter): give that block a place in
  // the graph. The decision rests on what every rank has alike: the input and the gate.
  if (torch::GradMode::is_enabled() && !back.requires_grad() && (xs.requires_grad() || any_requires_grad(gate_->parameters())))
    back = back.detach().requires_grad_(true);
  // 4. rows back to the ranks they came from, in dispatch order.
  return dist::all_to_all(g, back, recv_rows, send_rows);  // [A_computing, D]
}

at::Tensor MoELayerImpl::add_shared_experts(at::Tensor y, const at::Tensor& x, double& shared_flops) {
  for (const auto& s : shared_) {
    y = y + s->forward(x);
    shared_flops += static_cast<double>(x.size(0)) * s->flops_per_token();
  }
  return y;
}

RouterState MoELayerImpl::router_state() const {
  RouterState state;
  if (!router_state_) return state;
  for (const auto& b : router_state_->named_buffers(/*recurse=*/false)) state[b.key()] = b.value();
  for (const auto& p : router_state_->named_parameters(/*recurse=*/false)) state[p.key()] = p.value();
  return state;
}

void MoELayerImpl::record_feedback(const Routing& r, int64_t n_tokens) {
  // Over the whole batch when it is split over processes, so every process updates alike.
  at::Tensor seen = torch::tensor({static_cast<double>(n_tokens), static_cast<double>(r.assignments_before_capacity)},
                                  torch::kDouble);
  dist::batch_sum_(seen);
  feedback_.tokens += seen[0].item<double>();
  feedback_.assignments += seen[1].item<double>();
  if (r.has_batch_threshold) feedback_.thresholds.push_back(r.batch_threshold);
}

void MoELayerImpl::after_step() {
  update_bias();
  if (!router_state_ || feedback_.empty()) return;
  RouterState state = router_state();
  update_router_state(o_.router, state, feedback_);
  feedback_ = RouterFeedback{};
  feedback_.n_experts = o_.n_experts;
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
