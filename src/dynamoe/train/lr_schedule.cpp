#include "dynamoe/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace dynamoe::train {

double lr_at(const config::TrainConfig& cfg, int64_t step, int64_t total_steps) {
  if (cfg.warmup_steps > 0 && step < cfg.warmup_steps)
    return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(cfg.warmup_steps);
  if (cfg.lr_schedule == "constant") return cfg.lr;
  // cosine: from lr at the end of warmup to min_lr_ratio * lr at the last step.
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - cfg.warmup_steps - 1);
  const double t = std::clamp(static_cast<double>(step - cfg.warmup_steps) / decay_steps, 0.0, 1.0);
  const double floor = cfg.min_lr_ratio * cfg.lr;
  return floor + (cfg.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * t));
}

}  // namespace dynamoe::train
