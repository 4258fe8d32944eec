#pragma once
// An optimizer's state (moments, step counts) for checkpoints, keyed by parameter name:
//   AdamW  "<param>.exp_avg", "<param>.exp_avg_sq", "<param>.step" (int64 scalar)
//          and "<param>.max_exp_avg_sq" when amsgrad is on
//   SGD    "<param>.momentum_buffer" (when momentum is on)
// with the optimizer's kind in the metadata ("optimizer": "adamw" | "sgd"). Names, not
// positions: a checkpoint saved with the experts split one way over processes loads with them
// split any other way, or in one process. Checkpoints written before this format held a
// LibTorch archive (optimizer.pt); load_optimizer_archive still reads those.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <map>
#include <string>

#include "dynamoe/io/safetensors.h"

namespace dynamoe::io {

/// The optimizer's kind as the metadata names it ("adamw", "sgd"); an error for others.
std::string optimizer_kind(const torch::optim::Optimizer& opt);

/// The state of every parameter of `opt` that has one, named after the parameter in `names`
/// (TensorImpl address -> state_dict name; parameters missing from it are an error).
NamedTensors optimizer_state_tensors(const torch::optim::Optimizer& opt,
                                     const std::map<const void*, std::string>& names);

/// Installs the state in `f` (written by optimizer_state_tensors for an optimizer of the same
/// kind) for every parameter of `opt` named in `names`. A parameter with no saved state starts
/// fresh, as it was in the saving run (no step has given it a gradient yet). Saved state for a
/// name that is not a parameter here is an error unless `may_skip` accepts it (experts held by
/// other processes); so are a shape that differs from the parameter's and another kind.
void load_optimizer_state(torch::optim::Optimizer& opt, const std::map<const void*, std::string>& names,
                          const SafetensorsFile& f, const std::function<bool(const std::string&)>& may_skip = nullptr);

/// The module's parameters by TensorImpl address, for the two functions above.
std::map<const void*, std::string> parameter_names(const torch::nn::Module& model);

/// Restores a LibTorch optimizer archive (optimizer.pt of older checkpoints); `where` names
/// the source in errors.
void load_optimizer_archive(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& where);

}  // namespace dynamoe::io
