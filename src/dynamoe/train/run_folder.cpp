#include "dynamoe/train/run_folder.h"

#include <unistd.h>

#include <filesystem>

#include "dynamoe/io/optimizer_state.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
namespace fs = std::filesystem;

std::pair<std::string, config::Config> resolve_run(const config::Config& cfg, const TrainOptions& opts) {
  if (!opts.resume.empty()) {
    std::string dir = opts.resume;
    if (!fs::exists(fs::path(dir) / "config.yaml") && fs::exists(fs::path(cfg.train.runs_dir) / dir / "config.yaml"))
      dir = (fs::path(cfg.train.runs_dir) / dir).string();
    DYNAMOE_CHECK(fs::exists(fs::path(dir) / "config.yaml"), "--resume: '", opts.resume,
                  "' is not a run folder (no config.yaml)");
    const std::string where = (fs::path(dir) / "config.yaml").string();
    config::Config saved = config::parse_config(read_file(where), where, opts.overrides);
    return {dir, saved};
  }
  DYNAMOE_CHECK(!opts.name.empty(), "train: a run name is needed");
  DYNAMOE_CHECK(opts.name.find('/') == std::string::npos && opts.name != "." && opts.name != "..",
                "--name '", opts.name, "' must be a plain folder name");
  return {(fs::path(cfg.train.runs_dir) / opts.name).string(), cfg};
}

ReplacedRun& ReplacedRun::operator=(ReplacedRun&& o) noexcept {
  if (this != &o) {
    run_dir_ = std::move(o.run_dir_);
    kept_ = std::move(o.kept_);
    o.kept_.clear();
  }
  return *this;
}

ReplacedRun::~ReplacedRun() {
  if (kept_.empty()) return;
  // The new run failed before its first checkpoint: the old one comes back.
  std::error_code ec;
  fs::remove_all(run_dir_, ec);
  fs::rename(kept_, run_dir_, ec);
}

void ReplacedRun::commit() {
  if (kept_.empty()) return;
  std::error_code ec;
  fs::remove_all(kept_, ec);
  kept_.clear();
}

ReplacedRun create_run_folder(const std::string& run_dir, const std::string& config_yaml, bool overwrite) {
  ReplacedRun replaced;
  if (fs::exists(run_dir)) {
    DYNAMOE_CHECK(overwrite, "run folder '", run_dir, "' already exists: pass --resume ", run_dir,
                  " to continue it, --overwrite to replace it, or another --name");
    const fs::path p = fs::path(run_dir).lexically_normal();
    const fs::path name = p.filename().empty() ? p.parent_path().filename() : p.filename();
    const fs::path kept = (p.filename().empty() ? p.parent_path() : p).parent_path() /
                          (".replaced-" + name.string() + "-" + std::to_string(::getpid()));
    std::error_code ec;
    fs::remove_all(kept, ec);
    fs::rename(run_dir, kept, ec);
    DYNAMOE_CHECK(!ec, "--overwrite: cannot move the old run '", run_dir, "' aside to '", kept.string(), "': ",
                  ec.message());
    replaced = ReplacedRun(run_dir, kept.string());
  }
  make_dirs(run_dir);
  write_file_atomic((fs::path(run_dir) / "config.yaml").string(), config_yaml);
  return replaced;
}

namespace {

/// The optimizer state of checkpoint `ckpt`: optimizer.safetensors (by parameter name, any
/// split of the experts), or the LibTorch archive optimizer.pt of older checkpoints.
void load_optimizer(const std::string& ckpt, torch::nn::Module& model, torch::optim::Optimizer& opt,
                    const std::function<bool(const std::string&)>& may_skip) {
  const fs::path named = fs::path(ckpt) / "optimizer.safetensors", archive = fs::path(ckpt) / "optimizer.pt";
  if (fs::exists(named)) {
    io::check_safetensors_file(named.string());
    io::load_optimizer_state(opt, io::parameter_names(model),
                             io::parse_safetensors(io::read_verified(named.string()), named.string()), may_skip);
    return;
  }
  DYNAMOE_CHECK(fs::exists(archive), ckpt, " holds no optimizer state (optimizer.safetensors)");
  DYNAMOE_CHECK(!may_skip, archive.string(), " is an older checkpoint's optimizer state, which loads only in one "
                "process with moe.expert_parallel = 1");
  io::load_optimizer_archive(opt, io::read_verified(archive.string()), ckpt);
}

}  // namespace

io::TrainerState resume_from_checkpoint(const std::string& run_dir, torch::nn::Module& model,
                                        torch::optim::Optimizer& opt, std::ostream& out,
                                        const std::function<bool(const std::string&)>& may_skip) {
  const std::vector<std::string> all = io::list_checkpoint_dirs((fs::path(run_dir) / "checkpoints").string());
  DYNAMOE_CHECK(!all.empty(), "--resume: run '", run_dir, "' has no checkpoint yet; start it again instead");
  // The newest checkpoint that reads back whole; a damaged one is reported and skipped.
  std::string damage;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string& ckpt = *it;
    try {
      io::TrainerState state = io::load_trainer_state(ckpt);
      io::load_state_dict(model, (fs::path(ckpt) / "model.safetensors").string(), may_skip);
      load_optimizer(ckpt, model, opt, may_skip);
      io::set_cpu_rng_state(state.rng_state, ckpt);
      out << "resuming " << run_dir << " from step " << state.step << " (" << ckpt << ")\n";
      return state;
    } catch (const Error& e) {
      out << "checkpoint " << ckpt << " cannot be used: " << e.what()
          << (std::next(it) != all.rend() ? "; trying the one before it" : "") << "\n";
      damage = e.what();
    }
  }
  throw Error(str("--resume: no checkpoint of run '", run_dir, "' reads back whole (the oldest: ", damage, ")"));
}

std::string save_run_checkpoint(const std::string& run_dir, torch::nn::Module& model, torch::optim::Optimizer& opt,
                                io::TrainerState& state, int64_t step, int64_t per_epoch,
                                const std::string& config_yaml, int64_t keep, const io::CheckpointExtras& extras) {
  state.step = step;
  state.epoch = step / per_epoch;
  state.batch_in_epoch = step % per_epoch;
  state.rng_state = io::cpu_rng_state();
  return io::save_checkpoint((fs::path(run_dir) / "checkpoints").string(), model, opt, state, config_yaml, keep,
                             extras);
}

}  // namespace dynamoe::train
