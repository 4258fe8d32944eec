#pragma once
// Learning-rate schedules: linear warmup, then constant or cosine decay to min_lr_ratio * lr.
#include <cstdint>

#include "dynamoe/config/config.h"

namespace dynamoe::train {

/// The learning rate for optimizer step `step` (0-based) of `total_steps`.
double lr_at(const config::TrainConfig& cfg, int64_t step, int64_t total_steps);

}  // namespace dynamoe::train
