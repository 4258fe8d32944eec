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

namespace {

/// A LibTorch failure while the task is set up (the model's tensors too large for memory, or
/// shapes LibTorch refuses) as one line naming the sizes that made it.
[[noreturn]] void model_too_large(const config::Config& cfg, const std::string& what) {
  const std::string first_line = what.substr(0, what.find('\n'));
  throw ConfigError(str("cannot build model.kind = ", cfg.model.kind, " with model.d_model = ", cfg.model.d_model,
                        ", moe.experts.hidden = ", cfg.moe.experts.hidden, ", moe.layers.e_max = ", cfg.moe.layers.e_max,
                        (cfg.model.kind == "lm" ? str(", lm.layers = ", cfg.lm.layers, ", lm.d_ff = ", cfg.lm.d_ff) : ""),
                        ": ", first_line));
}

/// The task for cfg.model.kind (make_task without its error translation).
std::unique_ptr<Task> build_task(const config::Config& cfg) {
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

}  // namespace

std::unique_ptr<Task> make_task(const config::Config& cfg) {
  try {
    return build_task(cfg);
  } catch (const std::bad_alloc&) {
    model_too_large(cfg, "not enough memory");
  } catch (const c10::Error& e) {
    model_too_large(cfg, e.what_without_backtrace());
  }
}

void join_launched_processes(const config::Config& cfg, const std::string& command) {
  const dist::LaunchEnv env = dist::launch_env_from_environment();
  const int64_t P = cfg.moe.expert_parallel;
  if (P > 1 && env.world % P != 0)
    throw ConfigError(str("moe.expert_parallel = ", P, " needs a multiple of ", P, " processes (dynamoe launch --nproc ",
                          P, " -- ", command, " ...); this run has ", env.world));
  if (env.distributed() && !dist::world_group()) {
    dist::set_world_group(dist::ProcessGroup::join(env, {cfg.dist.timeout_s, cfg.dist.connect_timeout_s}));
    if (P > 1) dist::set_expert_parallel(static_cast<int>(P));
  }
}

std::function<bool(const std::string&)> other_ranks_experts() {
  if (!dist::expert_group()) return nullptr;
  return [](const std::string& name) { return name.rfind("experts.", 0) == 0 || name.find(".experts.") != std::string::npos; };
}

TrainResult run_training(const config::Config& cfg_in, const TrainOptions& opts) {
  auto [run_dir, cfg] = resolve_run(cfg_in, opts);
  // Everything that can fail on bad input (data, base model) happens in the task's constructor,
  // before anything is written.
  set_threads(cfg.train.threads);
  join_launched_processes(cfg, "train");
  std::unique_ptr<Task> task = make_task(cfg);
  return train_loop(*task, run_dir, cfg, opts);
}

}  // namespace dynamoe::train
