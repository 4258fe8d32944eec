#include "dynamoe/train/optimizer.h"

#include <torch/torch.h>

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

}  // namespace dynamoe::train
