#include "dynamoe/moe/layer_stats.h"

#include <cmath>

namespace dynamoe::moe {

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
