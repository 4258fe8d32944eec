#pragma once
// LayerStats: what one forward pass of an MoE layer did (docs/methods.md section 7), and a running sum
// of them over a logging interval or an evaluation.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dynamoe/moe/routing.h"

namespace dynamoe::moe {

/// What one forward pass of a layer did (for logging; computed without gradients).
struct LayerStats {
  int64_t tokens = 0;
  int64_t n_experts = 0;
  double active_mean = 0;                ///< mean active experts per token
  std::vector<int64_t> active_hist;      ///< [E + 1]: tokens with 0, 1, ..., E active experts
  std::vector<int64_t> expert_tokens;    ///< [E]: assignments per expert (after capacity)
  double load_cv = 0;                    ///< coefficient of variation of expert_tokens
  int64_t dropped = 0;                   ///< assignments dropped by capacity
  double drop_rate = 0;                  ///< dropped / assignments before capacity
  double entropy = 0;                    ///< mean Shannon entropy of the router's probabilities
  double tsallis_h_norm = -1;            ///< mean normalised Tsallis entropy (tsallis_hybrid; else -1)
  double expert_flops = 0;               ///< sum over experts of tokens routed x expert FLOPs
  double shared_flops = 0;               ///< shared experts' FLOPs
  double gate_flops = 0;
  std::map<std::string, double> losses;  ///< unweighted auxiliary losses
  std::vector<int32_t> token_active;     ///< [N]: active experts of each token (for per-example reports)
  std::vector<float> token_entropy;      ///< [N]: Shannon entropy of each token's router probabilities
  std::map<std::string, double> router_state;  ///< the router's controller state this pass used (P, I, lambda, tbar)
  double flops_per_token() const { return tokens ? (expert_flops + shared_flops + gate_flops) / tokens : 0; }
};

/// FLOPs one forward pass spent (2 x multiply-adds of the matrix products).
struct LayerFlops {
  double expert = 0;  ///< sum over experts of tokens routed x expert FLOPs per token
  double shared = 0;  ///< shared experts
  double gate = 0;
};

/// The statistics of one forward pass from its routing (after capacity), computed without
/// gradients with a single read of device data: active experts per token and their histogram,
/// load per expert and its CV, drops, the router's entropy (of probs clipped at 0 and
/// renormalised, so that dynamoe's noisy g gives a number) and the Tsallis H_norm.
LayerStats layer_stats(const Routing& r, const LayerFlops& flops, std::map<std::string, double> losses);

/// Sums LayerStats over batches; means are token-weighted.
struct LayerStatsAccumulator {
  int64_t tokens = 0, n_experts = 0, dropped = 0, assignments = 0, batches = 0;
  double active_sum = 0, entropy_sum = 0, tsallis_sum = 0, flops = 0, drop_rate_sum = 0;
  bool has_tsallis = false;
  std::vector<int64_t> active_hist, expert_tokens;
  std::map<std::string, double> loss_sums;
  std::map<std::string, double> router_state;  ///< the last pass's controller state (not summed)
  void add(const LayerStats& s);
  double active_mean() const { return tokens ? active_sum / tokens : 0; }
  double flops_per_token() const { return tokens ? flops / tokens : 0; }
  /// Fraction of assignments per expert.
  std::vector<double> load() const;
  double load_cv() const;
};

}  // namespace dynamoe::moe
