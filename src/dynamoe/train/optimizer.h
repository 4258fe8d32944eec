#pragma once
// Optimizers by name (adamw, sgd), their learning rate, and their state as bytes.
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
/// The optimizer's state (moments, step counts) serialised as bytes.
std::string optimizer_state_bytes(torch::optim::Optimizer& opt);
/// Restores state saved by optimizer_state_bytes; `where` names the source in errors.
void load_optimizer_state(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& where);

}  // namespace dynamoe::train
