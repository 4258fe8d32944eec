#include "dynamoe/report/stats.h"

#include <cmath>
#include <limits>

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

}  // namespace dynamoe::report
