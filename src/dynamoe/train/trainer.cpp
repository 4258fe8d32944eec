#include "dynamoe/train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
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
#include "dynamoe/util/process.h"

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

/// A lower bound of the parameters cfg's model holds, from the widths alone (the input and
/// vocabulary sizes, known from the data, count as 1; a fine-tuned base as 0).
double parameters_lower_bound(const config::Config& c) {
  const double D = static_cast<double>(c.model.d_model), F = static_cast<double>(c.moe.experts.hidden),
               E = static_cast<double>(c.moe.layers.e_min);
  const std::string& kind = c.model.kind;
  if (kind == "lm") {
    const double dff = c.lm.d_ff > 0 ? static_cast<double>(c.lm.d_ff) : 4 * D;
    const double ffn = c.lm.moe_every > 0 ? std::min(2 * D * dff, E * 2 * D * F) : 2 * D * dff;
    return static_cast<double>(c.lm.layers) * (4 * D * D + ffn);
  }
  if (kind == "moe_mlp" || kind == "moe_cnn") return static_cast<double>(c.model.moe_layers) * E * 2 * D * F;
  double n = 0;
  if (kind == "mlp")
    for (size_t i = 0; i + 1 < c.model.hidden.size(); ++i)
      n += static_cast<double>(c.model.hidden[i]) * static_cast<double>(c.model.hidden[i + 1]);
  if (kind == "cnn") {
    for (size_t i = 0; i + 1 < c.model.channels.size(); ++i)
      n += 9.0 * static_cast<double>(c.model.channels[i]) * static_cast<double>(c.model.channels[i + 1]);
    n += static_cast<double>(c.model.cnn_fc);
  }
  return n;
}

std::string gigas(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", x / 1e9);
  return buf;
}

/// Refuses, before anything is allocated, a model whose weights, gradients and two optimizer
/// moments (16 bytes a parameter) cannot fit in this machine's memory.
void check_model_fits(const config::Config& c) {
  const double params = parameters_lower_bound(c);
  const double memory = physical_memory_bytes();
  if (memory <= 0 || 16 * params <= memory) return;
  throw ConfigError(str("model.kind = ", c.model.kind, " with model.d_model = ", c.model.d_model,
                        ", moe.experts.hidden = ", c.moe.experts.hidden, ", moe.layers.e_min = ", c.moe.layers.e_min,
                        (c.model.kind == "lm" ? str(", lm.layers = ", c.lm.layers, ", lm.d_ff = ", c.lm.d_ff) : ""),
                        " holds at least ", gigas(params), " billion parameters: with gradients and "
                        "optimizer state at least ", gigas(16 * params), " GB, more than the ",
                        gigas(memory), " GB of memory here"));
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
  check_model_fits(cfg);
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
