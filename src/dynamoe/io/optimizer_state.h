#pragma once
// An optimizer's state (moments, step counts) as bytes, for checkpoints (optimizer.pt).
#include <torch/optim/optimizer.h>

#include <string>

namespace dynamoe::io {

/// The optimizer's state serialised as bytes (a LibTorch archive).
std::string optimizer_state_bytes(torch::optim::Optimizer& opt);
/// Restores state saved by optimizer_state_bytes; `where` names the source in errors.
void load_optimizer_state(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& where);

}  // namespace dynamoe::io
