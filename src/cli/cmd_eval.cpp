// dynamoe eval: evaluate a saved checkpoint on the test (or train) split.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/train/evaluate.h"
#include "dynamoe/train/moe_report.h"
#include "dynamoe/train/trainer.h"
#include "dynamoe/util/atomic_file.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

int run(const ParsedArgs& a) {
  if (!a.has("checkpoint")) throw UsageError("dynamoe eval: --checkpoint PATH is required; see dynamoe eval --help");
  const std::string ckpt = io::resolve_checkpoint(a.get("checkpoint"));
  const std::string cfg_path = (fs::path(ckpt) / "config.yaml").string();
  const config::Config cfg = config::parse_config(read_file(cfg_path), cfg_path, a.all("set"));
  const std::string split = a.get("split", "test");
  if (split != "test" && split != "train") throw UsageError(str("dynamoe eval: --split must be test or train, got '", split, "'"));
  const int threads = train::set_threads(cfg.train.threads);
  data::DataSplits data = data::load_data(cfg.data);
  models::Classifier model = models::build_model(cfg, data.spec);
  io::load_state_dict(*model, (fs::path(ckpt) / "model.safetensors").string());
  const io::TrainerState st = io::load_trainer_state(ckpt);
  const data::TensorDataset& ds = split == "test" ? data.test : data.train;
  train::EvalResult r = train::evaluate(*model, ds);
  std::printf("checkpoint %s (step %lld, %s, %lld parameters, %d threads)\n", ckpt.c_str(),
              static_cast<long long>(st.step), cfg.model.kind.c_str(), static_cast<long long>(model->num_parameters()),
              threads);
  std::printf("%s accuracy: %.2f%% (%lld examples), loss %.4f\n", split.c_str(), 100.0 * r.accuracy,
              static_cast<long long>(r.examples), r.loss);
  if (!r.moe.empty()) std::printf("MoE layers:\n%s", train::moe_table(r.moe).c_str());
  return 0;
}

}  // namespace

Command eval_command() {
  return {{"eval",
           "evaluate a checkpoint (accuracy and loss)",
           "dynamoe eval --checkpoint PATH [--split test|train] [--set KEY=VALUE]...",
           "PATH is a checkpoint folder (runs/<name>/checkpoints/step_<N>), a run folder (its newest\n"
           "checkpoint) or a model.safetensors file inside a checkpoint folder.",
           {{"checkpoint", "PATH", "checkpoint folder, run folder or model.safetensors"},
            {"split", "SPLIT", "test (default) or train"},
            {"set", "KEY=VALUE", "override a key of the saved config (e.g. data.dir)", true}},
           0},
          run};
}

}  // namespace dynamoe::cli
