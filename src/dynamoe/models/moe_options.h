#pragma once
// The options of one MoE layer from the config group `moe`: the bridge from configuration to
// the MoE core, which knows nothing of configs.
//   moe::MoELayer layer(moe_layer_options(cfg.moe, /*dim=*/64, /*n_experts=*/8));
#include <cstdint>
#include <utility>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/schedule.h"

namespace dynamoe::models {

/// Options for a layer of `n_experts` experts of width `dim`; k_max caps active experts per
/// token (0: none); prev_experts is the previous MoE layer's E when the gating residual is on.
moe::MoELayerOptions moe_layer_options(const config::MoEConfig& c, int64_t dim, int64_t n_experts, int64_t k_max = 0,
                                       int64_t prev_experts = 0);

/// Experts E_l and the cap k_max of each of `n_layers` MoE layers, from moe.layers (k_max all 0
/// unless moe.layers.k_max, which applies the same schedule to [k_max_min, k_max_max]).
std::pair<std::vector<int64_t>, std::vector<int64_t>> experts_and_k_max(const config::MoEConfig& c, int64_t n_layers);

}  // namespace dynamoe::models
