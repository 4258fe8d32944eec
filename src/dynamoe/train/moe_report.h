#pragma once
// Per-layer MoE metrics as JSON (metrics.jsonl, summary.json) and as a readable table.
#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "dynamoe/moe/layer_stats.h"

namespace dynamoe::train {

/// Adds each layer's stats of one forward pass to `acc` (resized to the number of layers).
void accumulate(std::vector<moe::LayerStatsAccumulator>& acc, const std::vector<moe::LayerStats>& stats);
/// [{layer, experts, active_mean, active_hist, load, load_cv, dropped, entropy, flops_per_token, losses}, ...]
nlohmann::json moe_json(const std::vector<moe::LayerStatsAccumulator>& acc);
/// Mean over layers of the mean active experts per token.
double mean_active(const std::vector<moe::LayerStatsAccumulator>& acc);
/// Adds an evaluation's per-layer MoE figures to its metrics row (moe, active_experts) and the
/// mean active experts of each layer to its progress line ("  active experts/token per <what>: ...").
void add_moe_eval(const std::vector<moe::LayerStatsAccumulator>& acc, const std::string& what, nlohmann::json& row,
                  std::string& line);
/// Adds the last evaluation's per-layer MoE figures to summary.json (moe, active_experts) and
/// prints their table under `title` ("MoE layers on the test set").
void add_moe_summary(const std::vector<moe::LayerStatsAccumulator>& acc, const std::string& title, nlohmann::json& summary,
                     std::ostream& out);
/// A table: layer, experts, mean active experts per token, load per expert (%), CV, drops.
std::string moe_table(const std::vector<moe::LayerStatsAccumulator>& acc);

}  // namespace dynamoe::train
