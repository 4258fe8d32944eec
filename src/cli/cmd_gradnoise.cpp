// dynamoe gradnoise: per-layer gradient noise of a checkpoint (docs/methods.md section 7.2).
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/train/gradnoise.h"
#include "dynamoe/train/trainer.h"
#include "dynamoe/util/atomic_file.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

int run(const ParsedArgs& a) {
  if (!a.has("checkpoint")) throw UsageError("dynamoe gradnoise: --checkpoint PATH is required");
  const std::string ckpt = io::resolve_checkpoint(a.get("checkpoint"));
  const std::string cfg_path = (fs::path(ckpt) / "config.yaml").string();
  const config::Config cfg = config::parse_config(read_file(cfg_path), cfg_path, a.all("set"));
  const int64_t batches = a.get_int("batches", cfg.train.gradnoise_batches, 2);
  const int64_t batch_size = a.get_int("batch-size", cfg.train.batch_size, 1);
  const int64_t seed = a.get_int("seed", 1, 0);
  train::set_threads(cfg.train.threads);
  data::DataSplits data = data::load_data(cfg.data);
  models::Classifier model = models::build_model(cfg, data.spec);
  io::load_state_dict(*model, (fs::path(ckpt) / "model.safetensors").string());
  auto layers = train::gradient_noise(*model, data.train, batch_size, batches, static_cast<uint64_t>(seed));
  std::printf("gradient noise of %s: %lld mini-batches of %lld\n", ckpt.c_str(), static_cast<long long>(batches),
              static_cast<long long>(batch_size));
  std::printf("%-22s %10s %14s %14s %12s\n", "layer", "params", "tr(Var)", "|mean g|^2", "ratio");
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& L : layers) {
    std::printf("%-22s %10lld %14.6g %14.6g %12.4g\n", L.layer.c_str(), static_cast<long long>(L.parameters),
                L.trace_var, L.mean_grad_sq, L.ratio);
    rows.push_back({{"layer", L.layer}, {"parameters", L.parameters}, {"trace_var", L.trace_var},
                    {"mean_grad_sq", L.mean_grad_sq}, {"ratio", L.ratio}});
  }
  if (a.has("out")) write_file_atomic(a.get("out"), nlohmann::json({{"checkpoint", ckpt}, {"batches", batches},
                                                                      {"batch_size", batch_size}, {"layers", rows}})
                                                         .dump(2) + "\n");
  return 0;
}

}  // namespace

Command gradnoise_command() {
  return {{"gradnoise",
           "per-layer gradient noise of a checkpoint: tr(Var) of M mini-batch gradients and its ratio to |mean|^2",
           "dynamoe gradnoise --checkpoint PATH [--batches M] [--batch-size B] [--seed S] [--out FILE.json]\n"
           "       [--set KEY=VALUE]...",
           "Gradients of the training loss (task + auxiliary losses, training mode) at the checkpoint's\n"
           "parameters on M random training mini-batches. A layer is a parameter-name prefix up to its\n"
           "first index (stack.moe.2, layers.0) or its first component (head). During training, set\n"
           "train.gradnoise_every to record the same figures in metrics.jsonl (split \"gradnoise\").",
           {{"checkpoint", "PATH", "checkpoint folder or run folder"},
            {"batches", "M", "number of mini-batches (default train.gradnoise_batches, 16)"},
            {"batch-size", "B", "mini-batch size (default train.batch_size)"},
            {"seed", "S", "seed of the mini-batch sampling (default 1)"},
            {"out", "FILE", "also write the figures as JSON"},
            {"set", "KEY=VALUE", "override a key of the saved config (e.g. data.dir)", true}},
           0},
          run};
}

}  // namespace dynamoe::cli
