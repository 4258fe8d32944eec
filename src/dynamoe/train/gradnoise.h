#pragma once
// Gradient noise (docs/methods.md section 7.2): at fixed parameters, the gradients g_1..g_M of the training
// loss on M random mini-batches; per layer the trace of their variance sum_j Var_m(g_{m,j})
// (unbiased, over m) and the ratio tr(Var) / ||mean_m g_m||^2.
// A "layer" is the parameter-name prefix up to its first numeric component ("stack.moe.2",
// "layers.0"), or the first component for the rest ("head", "in_proj").
#include <cstdint>
#include <string>
#include <vector>

#include "dynamoe/data/dataset.h"
#include "dynamoe/models/classifier.h"

namespace dynamoe::train {

struct GradNoiseLayer {
  std::string layer;
  int64_t parameters = 0;
  double trace_var = 0;     ///< sum_j Var_m(g_{m,j})
  double mean_grad_sq = 0;  ///< ||mean_m g_m||^2
  double ratio = 0;         ///< trace_var / mean_grad_sq
};

/// Computes the figures with the model in training mode (dropout and routing noise as in
/// training), without changing its parameters or the global RNG state.
std::vector<GradNoiseLayer> gradient_noise(models::ClassifierImpl& model, const data::TensorDataset& train,
                                           int64_t batch_size, int64_t n_batches, uint64_t seed);

/// The layer a parameter belongs to.
std::string layer_of(const std::string& parameter_name);

}  // namespace dynamoe::train
