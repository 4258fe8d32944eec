#pragma once
// Parameter counts of the model a config builds, split into the routed experts of each MoE
// layer and the rest, without loading any data: what a sweep's --dry-run prints and what the
// report needs for active parameters and FLOPs per example.
#include <cstdint>
#include <optional>
#include <vector>

#include "dynamoe/config/config.h"

namespace dynamoe::sweep {

struct ModelInfo {
  int64_t parameters = 0;               ///< all trainable parameters
  int64_t dense_parameters = 0;         ///< outside the MoE layers (input projection, head, norms, stems)
  std::vector<int64_t> experts;         ///< per MoE layer: routed experts E_l
  std::vector<int64_t> expert_params;   ///< per MoE layer: parameters of all its routed experts
  std::vector<int64_t> always_params;   ///< per MoE layer: gate, shared experts, gating residual (always used)
  bool convolutional = false;           ///< a conv stem (its FLOPs are not 2 x its parameters)

  /// Parameters a token uses: dense + always-used + active_l / E_l of each layer's experts.
  double active_parameters(const std::vector<double>& active_per_layer) const;
};

/// Builds the model of `cfg` (weights random, nothing trained) and counts its parameters; nullopt
/// when the input shape is only known from the data files (data.dataset = idx).
std::optional<ModelInfo> model_info(const config::Config& cfg);

}  // namespace dynamoe::sweep
