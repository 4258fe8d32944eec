#include "dynamoe/moe/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "dynamoe/util/error.h"
#include "dynamoe/util/registry.h"

namespace dynamoe::moe {

namespace {

/// Tolerance for "equal" in rounding and in largest-remainder ties: values computed through
/// sin() or a division carry ~1e-15 of noise, which must not decide a half-way case or a tie.
constexpr double kTol = 1e-9;

/// sin(2 pi r), exact (0, 1, -1) at quarter cycles so that half-way cases are not decided by
/// the rounding noise of std::sin (sin(2 pi) is -2.4e-16, not 0).
double sin_2pi(double t) {
  const double r = t - std::floor(t);  // [0, 1), exact
  if (r == 0.0 || r == 0.5) return 0.0;
  if (r == 0.25) return 1.0;
  if (r == 0.75) return -1.0;
  return std::sin(2.0 * M_PI * r);
}

/// The schedule's value for layer l of L before rounding. The piecewise-linear schedules are
/// computed as (integer numerator) / (L - 1), a single correctly rounded division, so that an
/// exact half-integer (e.g. 6.5) is represented exactly.
double unrounded(const ScheduleOptions& o, int64_t l, int64_t n_layers) {
  const double den = n_layers > 1 ? static_cast<double>(n_layers - 1) : 1.0;  // x = l / den
  const double num = n_layers > 1 ? static_cast<double>(l) : 0.0;            // x = num / den
  return schedule_registry().at(o.name).shape(o, num, den);
}

/// The shapes: with d = e_max - e_min and tri = (1 - |2x - 1|) * den.
double tri_of(double num, double den) { return den - std::abs(2.0 * num - den); }
double uniform(const ScheduleOptions& o, double, double) { return static_cast<double>(o.e_max); }
double descending(const ScheduleOptions& o, double num, double den) {
  return (o.e_max * den - (o.e_max - o.e_min) * num) / den;
}
double ascending(const ScheduleOptions& o, double num, double den) {
  return (o.e_min * den + (o.e_max - o.e_min) * num) / den;
}
double pyramid(const ScheduleOptions& o, double num, double den) {
  return (o.e_min * den + (o.e_max - o.e_min) * tri_of(num, den)) / den;
}
double hourglass(const ScheduleOptions& o, double num, double den) {
  return (o.e_max * den - (o.e_max - o.e_min) * tri_of(num, den)) / den;
}
double wave(const ScheduleOptions& o, double num, double den) {
  const double t = (o.wave_frequency * num) / den;  // f x
  return (o.e_min + o.e_max) / 2.0 + (o.e_max - o.e_min) / 2.0 * sin_2pi(t);
}

ScheduleKind shape_without_options(double (*f)(const ScheduleOptions&, double, double)) {
  return {[] { return std::static_pointer_cast<KindOptions>(std::make_shared<NoOptions>()); },
          [](const KindOptions&, ScheduleOptions&) {}, f};
}

/// Nearest integer, half-way cases up (= std::round for the positive values here); values
/// within kTol of a half-integer count as half-way.
int64_t round_half_up(double v) {
  const double fl = std::floor(v);
  return static_cast<int64_t>(v - fl >= 0.5 - kTol ? fl + 1.0 : fl);
}

/// Largest-remainder apportionment of `total` seats in proportion to v (all v > 0), with at
/// least one seat each (total >= v.size()).
///  1. Layers whose share total * v_l / sum(v) is below 1 get exactly 1; the remaining seats are
///     shared among the other layers in proportion to their v, repeatedly, until every
///     remaining share is >= 1 (usually no layer is below 1 and this step does nothing).
///  2. Each remaining layer gets floor(share); the seats left over go, one each, to the layers
///     with the largest fractional remainders, ties (within kTol) to the lower layer index.
std::vector<int64_t> apportion(const std::vector<double>& v, int64_t total) {
  const size_t n = v.size();
  std::vector<int64_t> out(n, 0);
  std::vector<bool> fixed(n, false);
  std::vector<double> share(n, 0.0);
  int64_t seats = total;
  for (bool changed = true; changed;) {
    changed = false;
    double sum = 0;
    for (size_t i = 0; i < n; ++i)
      if (!fixed[i]) sum += v[i];
    for (size_t i = 0; i < n; ++i)
      if (!fixed[i]) share[i] = static_cast<double>(seats) * v[i] / sum;
    for (size_t i = 0; i < n; ++i) {
      if (!fixed[i] && share[i] < 1.0 - kTol) {
        fixed[i] = true;
        out[i] = 1;
        --seats;
        changed = true;
      }
    }
  }
  std::vector<double> rem(n, 0.0);
  std::vector<bool> bumped(n, false);
  int64_t left = seats;
  for (size_t i = 0; i < n; ++i) {
    if (fixed[i]) continue;
    out[i] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(share[i] + kTol)));
    rem[i] = share[i] - static_cast<double>(out[i]);
    left -= out[i];
  }
  for (; left > 0; --left) {  // +1 to the largest remainders, ties to the lower index
    size_t best = n;
    for (size_t i = 0; i < n; ++i)
      if (!fixed[i] && !bumped[i] && (best == n || rem[i] > rem[best] + kTol)) best = i;
    DYNAMOE_CHECK(best < n, "schedule: internal error in largest-remainder rounding");
    bumped[best] = true;
    ++out[best];
  }
  for (; left < 0; ++left) {  // only when floor(share + kTol) overshot: -1 to the smallest remainders
    size_t worst = n;
    for (size_t i = n; i-- > 0;)
      if (!fixed[i] && out[i] > 1 && (worst == n || rem[i] < rem[worst] - kTol)) worst = i;
    DYNAMOE_CHECK(worst < n, "schedule: internal error in largest-remainder rounding");
    --out[worst];
    rem[worst] += 1.0;
  }
  return out;
}

}  // namespace

void WaveOptions::visit(OptionVisitor& v) {
  v.real("frequency", frequency, "wave schedule: cycles over the depth", 0.0);
}

Registry<ScheduleKind>& schedule_registry() {
  static Registry<ScheduleKind> reg("schedule");
  return reg;
}

DYNAMOE_REGISTER(schedule_registry(), "uniform", shape_without_options(uniform));
DYNAMOE_REGISTER(schedule_registry(), "descending", shape_without_options(descending));
DYNAMOE_REGISTER(schedule_registry(), "ascending", shape_without_options(ascending));
DYNAMOE_REGISTER(schedule_registry(), "pyramid", shape_without_options(pyramid));
DYNAMOE_REGISTER(schedule_registry(), "hourglass", shape_without_options(hourglass));
DYNAMOE_REGISTER(schedule_registry(), "wave",
                 (ScheduleKind{[] { return std::static_pointer_cast<KindOptions>(std::make_shared<WaveOptions>()); },
                               [](const KindOptions& k, ScheduleOptions& o) {
                                 o.wave_frequency = dynamic_cast<const WaveOptions&>(k).frequency;
                               },
                               wave}));

std::vector<std::string> schedule_names() { return schedule_registry().names(); }

ScheduleOptions schedule_options(const KindChoice& choice, int64_t e_min, int64_t e_max, int64_t total_experts) {
  ScheduleOptions o;
  o.name = choice.kind();
  o.e_min = e_min;
  o.e_max = e_max;
  o.total_experts = total_experts;
  schedule_registry().at(choice.kind()).configure(choice.options(), o);
  return o;
}

KindChoice schedule_choice(const std::string& name) {
  return KindChoice(name, schedule_registry().at(name).defaults());
}

std::vector<int64_t> schedule_experts(const ScheduleOptions& o, int64_t n_layers) {
  if (!schedule_registry().contains(o.name))
    throw ConfigError(str("schedule: unknown name '", o.name, "' (valid: ", schedule_registry().joined(), ")"));
  if (o.e_min < 1) throw ConfigError(str("schedule: e_min = ", o.e_min, " is out of range (must be >= 1)"));
  if (o.e_min > o.e_max)
    throw ConfigError(str("schedule: e_min = ", o.e_min, " is greater than e_max = ", o.e_max));
  if (n_layers < 1) throw ConfigError(str("schedule: n_layers = ", n_layers, " is out of range (must be >= 1)"));
  if (o.total_experts < 0)
    throw ConfigError(str("schedule: total_experts = ", o.total_experts, " is out of range (must be 0 = off, or > 0)"));
  if (o.total_experts > 0 && o.total_experts < n_layers)
    throw ConfigError(str("schedule: total_experts = ", o.total_experts, " is less than the number of layers ",
                          n_layers, " (every layer needs at least one expert)"));
  if (!std::isfinite(o.wave_frequency))
    throw ConfigError(str("schedule: wave_frequency = ", o.wave_frequency, " is not a finite number"));

  std::vector<double> v(static_cast<size_t>(n_layers));
  for (int64_t l = 0; l < n_layers; ++l)  // in [e_min, e_max] already; the clamp guards rounding noise
    v[l] = std::clamp(unrounded(o, l, n_layers), static_cast<double>(o.e_min), static_cast<double>(o.e_max));
  if (o.total_experts > 0) return apportion(v, o.total_experts);

  std::vector<int64_t> e(v.size());
  for (size_t l = 0; l < v.size(); ++l)
    e[l] = std::clamp(round_half_up(v[l]), std::max<int64_t>(1, o.e_min), o.e_max);
  return e;
}

}  // namespace dynamoe::moe
