#pragma once
// Checkpoints: a folder runs/<name>/checkpoints/step_<8 digits>/ holding
//   model.safetensors   weights and buffers, named like a PyTorch state_dict
//   optimizer.safetensors  optimizer state by parameter name (io/optimizer_state.h)
//   state.json          step, epoch, batch within the epoch, CPU RNG state (hex), and the
//                       FNV-1a checksums of the two files above
//   config.yaml         the resolved configuration (so the folder is self-contained)
// The folder is written under a temporary name and renamed into place, so a checkpoint
// either exists whole or not at all.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dynamoe::io {

/// Where the training loop stands.
struct TrainerState {
  int64_t step = 0;            ///< optimizer steps done
  int64_t epoch = 0;           ///< epoch of the next batch
  int64_t batch_in_epoch = 0;  ///< index of the next batch within its epoch
  std::string rng_state;       ///< CPU generator state, hex
};

/// The module's parameters and buffers in state_dict order and naming.
std::vector<std::pair<std::string, at::Tensor>> state_dict(const torch::nn::Module& m);
/// The bytes of a checkpoint file, checked against the FNV-1a checksum that the state.json
/// beside it recorded when it was written (files without one are returned as read); a
/// mismatch is an error saying the file is damaged.
std::string read_verified(const std::string& path);
/// Copies tensors from a safetensors file into the module; every name must match in name,
/// shape and dtype, with none missing and none extra except those `may_skip` accepts (the other
/// ranks' experts of an expert-parallel run). A damaged checkpoint file is an error
/// (read_verified), and so is a NaN or infinite value in a floating-point tensor.
void load_state_dict(torch::nn::Module& m, const std::string& safetensors_path,
                     const std::function<bool(const std::string&)>& may_skip = nullptr);

/// What a checkpoint holds beyond this process's module and optimizer: the tensors and the
/// optimizer state of experts other processes hold (under their global names).
struct CheckpointExtras {
  std::vector<std::pair<std::string, at::Tensor>> tensors;            ///< into model.safetensors
  std::vector<std::pair<std::string, at::Tensor>> optimizer_tensors;  ///< into optimizer.safetensors
};

/// The current CPU RNG state as hex, and back.
std::string cpu_rng_state();
void set_cpu_rng_state(const std::string& hex, const std::string& where);

/// Writes checkpoint step_<step> under `checkpoints_dir` atomically, then removes all but the
/// newest `keep` checkpoints. Returns the checkpoint folder.
std::string save_checkpoint(const std::string& checkpoints_dir, torch::nn::Module& model,
                            torch::optim::Optimizer& opt, const TrainerState& state,
                            const std::string& config_yaml, int64_t keep, const CheckpointExtras& extras = {});

/// The complete checkpoint folders in `checkpoints_dir`, oldest first.
std::vector<std::string> list_checkpoint_dirs(const std::string& checkpoints_dir);
/// The newest complete checkpoint in `checkpoints_dir`, or "" when none.
std::string latest_checkpoint(const std::string& checkpoints_dir);
/// Resolves a user's --checkpoint argument: a checkpoint folder, a run folder (its newest
/// checkpoint) or a model.safetensors file (its folder). Throws a clear error otherwise.
std::string resolve_checkpoint(const std::string& arg);
/// Reads state.json of a checkpoint folder.
TrainerState load_trainer_state(const std::string& checkpoint_dir);

}  // namespace dynamoe::io
