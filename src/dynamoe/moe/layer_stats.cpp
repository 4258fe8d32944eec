#include "dynamoe/moe/layer_stats.h"

#include <ATen/ATen.h>

#include <cmath>

namespace dynamoe::moe {

LayerStats layer_stats(const Routing& r, const LayerFlops& flops, std::map<std::string, double> losses) {
  at::NoGradGuard no_grad;
  const int64_t N = r.mask.size(0), E = r.mask.size(1);
  LayerStats st;
  st.tokens = N;
  st.n_experts = E;
  st.losses = std::move(losses);
  st.expert_flops = flops.expert;
  st.shared_flops = flops.shared;
  st.gate_flops = flops.gate;
  st.dropped = r.dropped;
  st.drop_rate = r.assignments_before_capacity > 0 ? double(r.dropped) / double(r.assignments_before_capacity) : 0;
  // Everything read on the host in one packed tensor: active [N], entropy [N], load [E], h_norm [0 or 1].
  at::Tensor p = r.probs.detach().to(at::kDouble).clamp_min(0);          // [N, E]
  p = p / p.sum(1, /*keepdim=*/true).clamp_min(1e-300);
  std::vector<at::Tensor> parts = {r.mask.sum(1).to(at::kDouble),            // [N] active experts
                                   -at::special_xlogy(p, p).sum(1),           // [N] entropy
                                   r.mask.sum(0).to(at::kDouble)};            // [E] load
  if (r.h_norm.defined()) parts.push_back(r.h_norm.detach().to(at::kDouble).mean().reshape({1}));
  const at::Tensor packed = at::cat(parts).contiguous();
  const double* v = packed.data_ptr<double>();
  st.token_active.resize(N);
  st.token_entropy.resize(N);
  st.active_hist.assign(E + 1, 0);
  double active_sum = 0, entropy_sum = 0;
  for (int64_t t = 0; t < N; ++t) {
    const auto a = static_cast<int32_t>(v[t]);
    st.token_active[t] = a;
    ++st.active_hist[a];
    active_sum += v[t];
    st.token_entropy[t] = static_cast<float>(v[N + t]);
    entropy_sum += v[N + t];
  }
  st.active_mean = N ? active_sum / static_cast<double>(N) : 0;
  st.entropy = N ? entropy_sum / static_cast<double>(N) : 0;
  st.expert_tokens.resize(E);
  double load_sum = 0, load_sq = 0;
  for (int64_t e = 0; e < E; ++e) {
    st.expert_tokens[e] = static_cast<int64_t>(v[2 * N + e]);
    load_sum += v[2 * N + e];
  }
  const double mean_load = E ? load_sum / static_cast<double>(E) : 0;
  for (int64_t e = 0; e < E; ++e) load_sq += (v[2 * N + e] - mean_load) * (v[2 * N + e] - mean_load);
  st.load_cv = mean_load > 0 ? std::sqrt(load_sq / static_cast<double>(E)) / mean_load : 0;
  if (r.h_norm.defined()) st.tsallis_h_norm = v[2 * N + E];
  return st;
}

void LayerStatsAccumulator::add(const LayerStats& s) {
  if (expert_tokens.empty()) {
    n_experts = s.n_experts;
    expert_tokens.assign(s.expert_tokens.size(), 0);
    active_hist.assign(s.active_hist.size(), 0);
  }
  tokens += s.tokens;
  ++batches;
  active_sum += s.active_mean * s.tokens;
  entropy_sum += s.entropy * s.tokens;
  if (s.tsallis_h_norm >= 0) {
    has_tsallis = true;
    tsallis_sum += s.tsallis_h_norm * s.tokens;
  }
  flops += s.expert_flops + s.shared_flops + s.gate_flops;
  dropped += s.dropped;
  drop_rate_sum += s.drop_rate;
  for (size_t i = 0; i < s.expert_tokens.size() && i < expert_tokens.size(); ++i) expert_tokens[i] += s.expert_tokens[i];
  for (size_t i = 0; i < s.active_hist.size() && i < active_hist.size(); ++i) active_hist[i] += s.active_hist[i];
  for (const auto& [k, v] : s.losses) loss_sums[k] += v;
  if (!s.router_state.empty()) router_state = s.router_state;
}

std::vector<double> LayerStatsAccumulator::load() const {
  double total = 0;
  for (int64_t v : expert_tokens) total += static_cast<double>(v);
  std::vector<double> out;
  for (int64_t v : expert_tokens) out.push_back(total > 0 ? v / total : 0);
  return out;
}

double LayerStatsAccumulator::load_cv() const {
  if (expert_tokens.empty()) return 0;
  double mean = 0, var = 0;
  for (int64_t v : expert_tokens) mean += static_cast<double>(v);
  mean /= static_cast<double>(expert_tokens.size());
  for (int64_t v : expert_tokens) var += (v - mean) * (v - mean);
  var /= static_cast<double>(expert_tokens.size());
  return mean > 0 ? std::sqrt(var) / mean : 0;
}

}  // namespace dynamoe::moe
