#pragma once
// Small-sample statistics for study results: mean, sample standard deviation, Welch's t-test,
// the one-sample t-test, the interaction F-test of a two-way layout, and Spearman's rank
// correlation with its confidence interval. Plain C++ (no torch).
//
//   WelchTest w = welch_test({0.91, 0.92, 0.90}, {0.89, 0.88, 0.90});
//   if (w.p < 0.05) ...   // two-sided
#include <cstdint>
#include <vector>

namespace dynamoe::report {

/// Arithmetic mean (NaN for no values).
double mean(const std::vector<double>& v);
/// Sample standard deviation (divisor n - 1); 0 for fewer than two values.
double stdev(const std::vector<double>& v);

/// Regularized incomplete beta function I_x(a, b), a, b > 0, x in [0, 1].
double incomplete_beta(double a, double b, double x);
/// Two-sided p-value of Student's t with `df` degrees of freedom: P(|T| >= |t|).
double student_t_p(double t, double df);
/// Upper tail of Fisher's F with (d1, d2) degrees of freedom: P(F >= f).
double f_upper_p(double f, double d1, double d2);

struct WelchTest {
  double diff = 0;  ///< mean(a) - mean(b)
  double t = 0, df = 0;
  double p = 1;     ///< two-sided; 1 when a test is impossible (fewer than 2 values on a side, no variance)
};
/// Welch's unequal-variance t-test of mean(a) - mean(b). When both samples have zero variance
/// the difference is exact: p = 0 if the means differ, 1 if they are equal.
WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b);

struct OneSampleTest {
  double mean = 0, sd = 0, t = 0, df = 0;
  double p = 1;  ///< two-sided test of mean == 0 (1 for fewer than two values)
};
OneSampleTest one_sample_test(const std::vector<double>& x);

/// The interaction test of a two-way layout: factor A (rows) x factor B (columns), replicates
/// in each cell. Cells may hold different numbers of replicates (unweighted means with the
/// harmonic mean replicate count); every cell needs at least one value and some cell two.
struct InteractionTest {
  double f = 0, df_interaction = 0, df_error = 0;
  double p = 1;         ///< P(F >= f) for the A x B interaction
  double p_main_a = 1;  ///< the main effect of A (same error term)
};
InteractionTest interaction_test(const std::vector<std::vector<std::vector<double>>>& cells);  // [A][B][replicate]

/// Spearman's rank correlation of paired samples: the Pearson correlation of their ranks, tied
/// values taking the mean of their ranks. The interval is the Fisher z interval with the
/// Fieller-Hartley-Pearson standard error 1.03 / sqrt(n - 3): tanh(atanh(rho) -+ z_q SE), z_q
/// the normal quantile of the level (1.959964 for 95%). p is two-sided, from
/// t = rho sqrt((n - 2) / (1 - rho^2)) with n - 2 degrees of freedom.
struct RankCorrelation {
  double rho = 0;         ///< NaN when a side is constant (no ranking) or n < 2
  double lo = 0, hi = 0;  ///< the interval (NaN for n < 4)
  double p = 1;
  int64_t n = 0;
};
RankCorrelation spearman(const std::vector<double>& a, const std::vector<double>& b, double level = 0.95);
/// The best of several configurations by mean (higher or lower is better), and whether it beats
/// the runner-up (the second-best mean) by Welch's test at p < 0.05. best = -1 when fewer than
/// two configurations have values (nothing to compare).
struct BestOf {
  int64_t best = -1, runner_up = -1;
  double p = 1;              ///< Welch's two-sided p of best against runner-up
  bool significant = false;  ///< p < 0.05
};
BestOf best_of(const std::vector<std::vector<double>>& samples, bool higher);

/// The ranks 1..n of v, ties taking the mean of the ranks they span.
std::vector<double> average_ranks(const std::vector<double>& v);

}  // namespace dynamoe::report
