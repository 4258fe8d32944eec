#pragma once
// Optimizers by name (adamw, sgd) and their learning rate (their state as bytes: io/optimizer_state.h).
#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

#include "dynamoe/config/config.h"

namespace dynamoe::train {

/// Builds the optimizer named by cfg.optimizer over `params`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::TrainConfig& cfg,
                                                        std::vector<at::Tensor> params);
/// Sets the learning rate of every parameter group.
void set_lr(torch::optim::Optimizer& opt, double lr);

}  // namespace dynamoe::train
