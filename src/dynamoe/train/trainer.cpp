#include "dynamoe/train/trainer.h"

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "dynamoe/dist/launch_env.h"
#include "dynamoe/dist/process_group.h"
#include "dynamoe/train/classifier_task.h"
#include "dynamoe/train/finetune_task.h"
#include "dynamoe/train/lm_task.h"
#include "dynamoe/train/run_folder.h"
#include "dynamoe/train/train_loop.h"

namespace dynamoe::train {

int set_threads(int64_t threads) {
  // 0: the cores, shared evenly by the processes of a run on this machine.
  const int local = dist::launch_env_from_environment().local_world;
  int n = threads > 0 ? static_cast<int>(threads)
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / static_cast<unsigned>(local)));
  torch::set_num_threads(n);
  return n;
}

std::unique_ptr<Task> make_task(const config::Config& cfg) {
  // Model kinds that are not image classifiers (those are in the model registry) bring their own task.
  using Factory = std::function<std::unique_ptr<Task>(const config::Config&)>;
  static const std::map<std::string, Factory> tasks = {
      {"lm", [](const config::Config& c) { return std::make_unique<LMTask>(c); }},
      {"finetune", [](const config::Config& c) { return std::make_unique<FinetuneTask>(c); }},
  };
  auto it = tasks.find(cfg.model.kind);
  if (it != tasks.end()) return it->second(cfg);
  return std::make_unique<ClassifierTask>(cfg);
}

TrainResult run_training(const config::Config& cfg_in, const TrainOptions& opts) {
  auto [run_dir, cfg] = resolve_run(cfg_in, opts);
  // Everything that can fail on bad input (data, base model) happens in the task's constructor,
  // before anything is written.
  set_threads(cfg.train.threads);
  // Launched as one of several processes (`dynamoe launch`, torchrun's variables): join them
  // before the model is built (expert-parallel layers hold their group).
  const dist::LaunchEnv env = dist::launch_env_from_environment();
  const int64_t P = cfg.moe.expert_parallel;
  if (P > 1 && env.world % P != 0)
    throw ConfigError(str("moe.expert_parallel = ", P, " needs a multiple of ", P, " processes (dynamoe launch --nproc ",
                          P, " -- train ...); this run has ", env.world));
  if (env.distributed() && !dist::world_group()) {
    dist::set_world_group(dist::ProcessGroup::join(env, {cfg.dist.timeout_s, cfg.dist.connect_timeout_s}));
    if (P > 1) dist::set_expert_parallel(static_cast<int>(P));
  }
  std::unique_ptr<Task> task = make_task(cfg);
  return train_loop(*task, run_dir, cfg, opts);
}

}  // namespace dynamoe::train
