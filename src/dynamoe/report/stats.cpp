#include "dynamoe/report/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "dynamoe/util/error.h"

namespace dynamoe::report {

double mean(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double stdev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

namespace {

// Continued fraction of the incomplete beta function (modified Lentz), valid for
// x < (a + 1) / (a + b + 2).
double beta_fraction(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-15;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 1000; ++m) {
    // even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m))
    double num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
    d = 1 + num * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + num / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    // odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
    num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
    d = 1 + num * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + num / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double step = d * c;
    h *= step;
    if (std::fabs(step - 1) < eps) break;
  }
  return h;
}

}  // namespace

double incomplete_beta(double a, double b, double x) {
  DYNAMOE_CHECK(a > 0 && b > 0, "incomplete_beta: a = ", a, " and b = ", b, " must be positive");
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return std::exp(log_front) * beta_fraction(a, b, x) / a;
  return 1 - std::exp(log_front) * beta_fraction(b, a, 1 - x) / b;
}

double student_t_p(double t, double df) {
  if (!std::isfinite(t)) return std::isnan(t) ? 1.0 : 0.0;
  if (df <= 0) return 1;
  return incomplete_beta(df / 2, 0.5, df / (df + t * t));
}

double f_upper_p(double f, double d1, double d2) {
  if (std::isnan(f) || d1 <= 0 || d2 <= 0) return 1;
  if (f <= 0) return 1;
  if (!std::isfinite(f)) return 0;
  return incomplete_beta(d2 / 2, d1 / 2, d2 / (d2 + d1 * f));
}

WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b) {
  WelchTest w;
  if (a.empty() || b.empty()) return w;
  w.diff = mean(a) - mean(b);
  if (a.size() < 2 || b.size() < 2) return w;
  const double va = stdev(a) * stdev(a) / static_cast<double>(a.size());
  const double vb = stdev(b) * stdev(b) / static_cast<double>(b.size());
  if (va + vb == 0) {
    w.p = w.diff == 0 ? 1.0 : 0.0;
    w.t = w.diff == 0 ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), w.diff);
    return w;
  }
  w.t = w.diff / std::sqrt(va + vb);
  // Welch-Satterthwaite degrees of freedom
  w.df = (va + vb) * (va + vb) /
         (va * va / static_cast<double>(a.size() - 1) + vb * vb / static_cast<double>(b.size() - 1));
  w.p = student_t_p(w.t, w.df);
  return w;
}

OneSampleTest one_sample_test(const std::vector<double>& x) {
  OneSampleTest o;
  o.mean = x.empty() ? 0 : mean(x);
  if (x.size() < 2) return o;
  o.sd = stdev(x);
  o.df = static_cast<double>(x.size() - 1);
  if (o.sd == 0) {
    o.p = o.mean == 0 ? 1.0 : 0.0;
    return o;
  }
  o.t = o.mean / (o.sd / std::sqrt(static_cast<double>(x.size())));
  o.p = student_t_p(o.t, o.df);
  return o;
}

InteractionTest interaction_test(const std::vector<std::vector<std::vector<double>>>& cells) {
  InteractionTest r;
  const size_t A = cells.size();
  DYNAMOE_CHECK(A >= 2, "interaction_test: factor A needs two levels, got ", A);
  const size_t B = cells[0].size();
  DYNAMOE_CHECK(B >= 2, "interaction_test: factor B needs two levels, got ", B);
  std::vector<std::vector<double>> m(A, std::vector<double>(B));
  double inv_n = 0, ss_error = 0, total = 0;
  for (size_t i = 0; i < A; ++i) {
    DYNAMOE_CHECK(cells[i].size() == B, "interaction_test: row ", i, " has ", cells[i].size(), " cells, expected ", B);
    for (size_t j = 0; j < B; ++j) {
      const auto& x = cells[i][j];
      DYNAMOE_CHECK(!x.empty(), "interaction_test: cell (", i, ", ", j, ") is empty");
      m[i][j] = mean(x);
      inv_n += 1.0 / static_cast<double>(x.size());
      for (double v : x) ss_error += (v - m[i][j]) * (v - m[i][j]);
      total += static_cast<double>(x.size());
    }
  }
  const double n_h = static_cast<double>(A * B) / inv_n;  // harmonic mean replicates per cell
  std::vector<double> row(A, 0), col(B, 0);
  double grand = 0;
  for (size_t i = 0; i < A; ++i)
    for (size_t j = 0; j < B; ++j) {
      row[i] += m[i][j] / static_cast<double>(B);
      col[j] += m[i][j] / static_cast<double>(A);
      grand += m[i][j] / static_cast<double>(A * B);
    }
  double ss_ab = 0, ss_a = 0;
  for (size_t i = 0; i < A; ++i) {
    ss_a += static_cast<double>(B) * (row[i] - grand) * (row[i] - grand);
    for (size_t j = 0; j < B; ++j) {
      const double e = m[i][j] - row[i] - col[j] + grand;
      ss_ab += e * e;
    }
  }
  ss_ab *= n_h;
  ss_a *= n_h;
  r.df_interaction = static_cast<double>((A - 1) * (B - 1));
  r.df_error = total - static_cast<double>(A * B);
  DYNAMOE_CHECK(r.df_error > 0, "interaction_test: no cell has two replicates (no error term)");
  const double ms_error = ss_error / r.df_error;
  if (ms_error == 0) {
    r.f = ss_ab > 0 ? std::numeric_limits<double>::infinity() : 0;
    r.p = ss_ab > 0 ? 0 : 1;
    r.p_main_a = ss_a > 0 ? 0 : 1;
    return r;
  }
  r.f = ss_ab / r.df_interaction / ms_error;
  r.p = f_upper_p(r.f, r.df_interaction, r.df_error);
  r.p_main_a = f_upper_p(ss_a / static_cast<double>(A - 1) / ms_error, static_cast<double>(A - 1), r.df_error);
  return r;
}

BestOf best_of(const std::vector<std::vector<double>>& samples, bool higher) {
  BestOf b;
  std::vector<std::pair<double, int64_t>> means;  // (mean, index), best first after sorting
  for (size_t i = 0; i < samples.size(); ++i)
    if (!samples[i].empty()) means.emplace_back(higher ? -mean(samples[i]) : mean(samples[i]), static_cast<int64_t>(i));
  if (means.size() < 2) return b;
  std::stable_sort(means.begin(), means.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  b.best = means[0].second;
  b.runner_up = means[1].second;
  b.p = welch_test(samples[static_cast<size_t>(b.best)], samples[static_cast<size_t>(b.runner_up)]).p;
  b.significant = b.p < 0.05;
  return b;
}

std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> rank(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double r = 0.5 * static_cast<double>(i + j) + 1.0;  // mean of ranks i+1 .. j+1
    for (size_t k = i; k <= j; ++k) rank[order[k]] = r;
    i = j + 1;
  }
  return rank;
}

namespace {

/// The standard normal quantile (Acklam's rational approximation refined by one Newton step on
/// erfc; |error| < 1e-12 over (0, 1)).
double normal_quantile(double q) {
  DYNAMOE_CHECK(q > 0 && q < 1, "normal_quantile: q must be in (0, 1), got ", q);
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01,  -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (q < 0.02425) {
    const double r = std::sqrt(-2 * std::log(q));
    x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1);
  } else if (q <= 1 - 0.02425) {
    const double r = q - 0.5, s = r * r;
    x = (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r /
        (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1);
  } else {
    const double r = std::sqrt(-2 * std::log(1 - q));
    x = -(((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - q;  // Newton (Halley) refinement
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

}  // namespace

RankCorrelation spearman(const std::vector<double>& a, const std::vector<double>& b, double level) {
  DYNAMOE_CHECK(a.size() == b.size(), "spearman: the samples differ in length (", a.size(), " and ", b.size(), ")");
  DYNAMOE_CHECK(level > 0 && level < 1, "spearman: level must be in (0, 1), got ", level);
  RankCorrelation r;
  r.n = static_cast<int64_t>(a.size());
  const double nan = std::nan("");
  r.rho = r.lo = r.hi = nan;
  if (r.n < 2) return r;
  const std::vector<double> ra = average_ranks(a), rb = average_ranks(b);
  const double ma = mean(ra), mb = mean(rb);
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  if (saa == 0 || sbb == 0) return r;  // a constant side has no ranking
  r.rho = std::clamp(sab / std::sqrt(saa * sbb), -1.0, 1.0);
  const double n = static_cast<double>(r.n);
  if (r.n > 2) {
    if (std::fabs(r.rho) >= 1) {
      r.p = 0;
    } else {
      const double t = r.rho * std::sqrt((n - 2) / (1 - r.rho * r.rho));
      r.p = student_t_p(t, n - 2);
    }
  }
  if (r.n >= 4) {
    const double z = std::atanh(std::clamp(r.rho, -0.9999999999, 0.9999999999));
    const double half = normal_quantile(0.5 + level / 2) * 1.03 / std::sqrt(n - 3);
    r.lo = std::tanh(z - half);
    r.hi = std::tanh(z + half);
  }
  return r;
}

}  // namespace dynamoe::report
