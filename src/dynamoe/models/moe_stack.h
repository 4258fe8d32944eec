#pragma once
// MoEStack: L pre-norm residual MoE blocks, x = x + MoE_l(LayerNorm_l(x)), with the layer-wise
// expert counts (and optionally k_max) set by the schedule of config group `moe`.
// Parameters: norms.{l}.*, moe.{l}.* (see moe/moe_layer.h).
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>

#include "dynamoe/config/config.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/moe/moe_layer.h"

namespace dynamoe::models {

class MoEStackImpl : public torch::nn::Module {
 public:
  MoEStackImpl(const config::MoEConfig& cfg, int64_t dim, int64_t n_layers);
  /// x [N, D] -> [N, D]; appends one LayerStats per layer to out.moe_stats and adds the
  /// layers' auxiliary losses to out.aux_loss.
  at::Tensor forward(at::Tensor x, ModelOutput& out);
  /// Balancing-bias updates of every layer.
  void after_step();
  const std::vector<int64_t>& experts_per_layer() const { return experts_per_layer_; }

 private:
  std::vector<int64_t> experts_per_layer_, k_max_per_layer_;
  std::vector<torch::nn::LayerNorm> norms_;
  std::vector<moe::MoELayer> layers_;
};
TORCH_MODULE(MoEStack);

}  // namespace dynamoe::models
