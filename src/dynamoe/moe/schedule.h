#pragma once
// Layer-wise capacity schedules (DynaMoE, arXiv 2603.01697; docs/methods.md section 5):
// how many experts E_l each of the L MoE layers gets, between e_min and e_max.
//
//   ScheduleOptions o;
//   o.name = "pyramid";                                  // e_min = 2, e_max = 8
//   std::vector<int64_t> e = schedule_experts(o, 8);     // {2, 4, 5, 7, 7, 5, 4, 2}
//   o.total_experts = 32;                                // same shape, sum(e) == 32
//
// Plain C++ (no torch); the six shapes register themselves in schedule.cpp. The formulas, the rounding rules and a table are in docs/schedules.md.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/util/options.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

/// A schedule and its range.
struct ScheduleOptions {
  std::string name = "uniform";  ///< one of schedule_names()
  int64_t e_min = 2;             ///< fewest experts of a layer (>= 1)
  int64_t e_max = 8;             ///< most experts of a layer (>= e_min)
  int64_t total_experts = 0;     ///< B > 0: rescale so that the layers sum to B; 0: off
  double wave_frequency = 1.0;   ///< f, cycles over the depth of the network (wave only)
};

/// Options of the wave schedule (config: moe.layers.frequency with moe.layers.schedule = wave).
struct WaveOptions : KindOptionsOf<WaveOptions> {
  double frequency = 1.0;  ///< f, cycles over the depth of the network
  void visit(OptionVisitor& v) override;
};

/// A registered schedule: its options, how they fill ScheduleOptions, and its shape: the value
/// of layer x = num / den before rounding.
struct ScheduleKind {
  std::function<std::shared_ptr<KindOptions>()> defaults;
  std::function<void(const KindOptions&, ScheduleOptions&)> configure;
  std::function<double(const ScheduleOptions&, double num, double den)> shape;
};
/// The schedule registry.
Registry<ScheduleKind>& schedule_registry();

/// ScheduleOptions from a schedule kind with its options and the range.
ScheduleOptions schedule_options(const KindChoice& choice, int64_t e_min, int64_t e_max, int64_t total_experts);
/// The schedule called `name` with its default options.
KindChoice schedule_choice(const std::string& name);

/// Experts per layer for `n_layers` (L >= 1) MoE layers.
///
/// E_l = round(formula(x)), x = l / (L - 1) (0 when L = 1), rounded half up (values within 1e-9
/// of a half-integer count as half-integers, so 6.5 -> 7), then clamped to [e_min, e_max].
/// With total_experts = B the unrounded values are rescaled to sum to B by largest-remainder
/// rounding with at least one expert per layer (not clamped to e_max; see docs/schedules.md).
/// Throws ConfigError for an unknown name, e_min < 1, e_min > e_max, n_layers < 1,
/// total_experts < 0 or 0 < total_experts < n_layers, or a non-finite wave_frequency.
std::vector<int64_t> schedule_experts(const ScheduleOptions& o, int64_t n_layers);

/// The valid schedule names, sorted: ascending, descending, hourglass, pyramid, uniform, wave.
std::vector<std::string> schedule_names();

}  // namespace dynamoe::moe
