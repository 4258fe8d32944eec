#include "dynamoe/train/optimizer.h"

#include <torch/torch.h>

#include <sstream>

#include "dynamoe/util/error.h"

namespace dynamoe::train {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::TrainConfig& cfg,
                                                        std::vector<at::Tensor> params) {
  if (cfg.optimizer == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        std::move(params), torch::optim::AdamWOptions(cfg.lr)
                               .betas({cfg.beta1, cfg.beta2})
                               .eps(cfg.eps)
                               .weight_decay(cfg.weight_decay));
  }
  if (cfg.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        std::move(params), torch::optim::SGDOptions(cfg.lr)
                               .momentum(cfg.momentum)
                               .nesterov(cfg.nesterov)
                               .weight_decay(cfg.weight_decay));
  }
  throw ConfigError(str("config: train.optimizer = '", cfg.optimizer, "' is not one of adamw, sgd"));
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

std::string optimizer_state_bytes(torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  std::ostringstream os;
  archive.save_to(os);
  return os.str();
}

void load_optimizer_state(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& where) {
  try {
    std::istringstream is(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(is);
    opt.load(archive);
  } catch (const c10::Error& e) {
    throw Error(str(where, ": cannot load optimizer state: ", e.what_without_backtrace()));
  }
}

}  // namespace dynamoe::train
