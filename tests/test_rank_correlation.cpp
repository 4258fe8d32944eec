// Spearman's rank correlation (report/stats.h): tied ranks, a textbook example with its p-value,
// the Fisher z interval, degenerate samples.
#include <gtest/gtest.h>

#include <cmath>

#include "dynamoe/report/stats.h"
#include "test_util.h"

using namespace dynamoe;

TEST(RankCorrelation, TiesTakeTheMeanOfTheirRanks) {
  EXPECT_EQ(report::average_ranks({3.0, 1.0, 2.0, 2.0}), (std::vector<double>{4.0, 1.0, 2.5, 2.5}));
  EXPECT_EQ(report::average_ranks({5.0, 5.0, 5.0}), (std::vector<double>{2.0, 2.0, 2.0}));
}

// The example of the Wikipedia article "Spearman's rank correlation coefficient" (IQ against
// hours of television per week): rho = -29/165, p = 0.627188.
TEST(RankCorrelation, TextbookExampleAndItsInterval) {
  const std::vector<double> iq = {106, 100, 86, 101, 99, 103, 97, 113, 112, 110};
  const std::vector<double> tv = {7, 27, 2, 50, 28, 29, 20, 12, 6, 17};
  const report::RankCorrelation r = report::spearman(iq, tv);
  EXPECT_NEAR(r.rho, -29.0 / 165.0, 1e-12);
  EXPECT_NEAR(r.p, 0.627188, 1e-6);
  EXPECT_EQ(r.n, 10);
  // Fisher z interval: symmetric around atanh(rho) with half width z_0.975 * 1.03 / sqrt(n - 3).
  const double half = 1.959963984540054 * 1.03 / std::sqrt(7.0);
  EXPECT_NEAR(std::atanh(r.lo), std::atanh(r.rho) - half, 1e-9);
  EXPECT_NEAR(std::atanh(r.hi), std::atanh(r.rho) + half, 1e-9);
  const report::RankCorrelation r90 = report::spearman(iq, tv, 0.90);
  EXPECT_NEAR(std::atanh(r90.hi) - std::atanh(r90.rho), 1.6448536269514722 * 1.03 / std::sqrt(7.0), 1e-9);
}

TEST(RankCorrelation, MonotoneConstantAndShortSamples) {
  const report::RankCorrelation up = report::spearman({1, 2, 3, 4, 5}, {2, 4, 8, 16, 1000});
  EXPECT_DOUBLE_EQ(up.rho, 1.0);
  EXPECT_EQ(up.p, 0.0);
  EXPECT_DOUBLE_EQ(report::spearman({1, 2, 3, 4}, {4, 3, 2, 1}).rho, -1.0);
  EXPECT_TRUE(std::isnan(report::spearman({2, 2, 2, 2}, {1, 2, 3, 4}).rho)) << "a constant count has no ranking";
  EXPECT_TRUE(std::isnan(report::spearman({1}, {1}).rho));
  EXPECT_TRUE(std::isnan(report::spearman({1, 2, 3}, {1, 3, 2}).lo)) << "no interval below 4 pairs";
  testutil::expect_error([] { report::spearman({1, 2}, {1}); }, {"differ in length"});
}
