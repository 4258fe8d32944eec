// Real data: the MoE-MLP of configs/moe_mlp_fashion.yaml, one epoch on Fashion-MNIST per router,
// reaches >= 85% test accuracy; active experts per token behave as each router should.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;

class MoEFashion : public ::testing::TestWithParam<std::string> {};

TEST_P(MoEFashion, OneEpochReachesEightyFivePercent) {
  const std::string router = GetParam();
  testutil::TempDir tmp;
  const std::string data_dir = testutil::source_dir() + "/data";
  auto f = testutil::run_command(testutil::cli() + " data fetch fashion-mnist --data-dir " + data_dir);
  ASSERT_EQ(f.exit_code, 0) << f.output;
  auto t = testutil::run_command(testutil::cli() + " train --config " + testutil::source_dir() +
                                 "/configs/moe_mlp_fashion.yaml --set data.dir=" + data_dir + " --set moe.router.kind=" +
                                 router + " --set train.epochs=1 --set train.log_every=1000 --set train.threads=1" +
                                 " --set train.runs_dir=" + (tmp / "runs") + " --name r");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  auto s = nlohmann::json::parse(read_file(tmp / "runs/r/summary.json"));
  const double acc = s["test_accuracy"].get<double>();
  std::cout << router << ": test accuracy " << 100 * acc << "%, active experts per layer:";
  for (const auto& layer : s["moe"]) std::cout << " " << layer["active_mean"].get<double>();
  std::cout << "\n";
  EXPECT_GE(acc, 0.85) << t.output;
  ASSERT_EQ(s["moe"].size(), 4u);
  int variable_layers = 0;
  for (const auto& layer : s["moe"]) {
    int bins = 0;
    for (const auto& h : layer["active_hist"]) bins += h.get<int64_t>() > 0;
    variable_layers += bins > 1;
    if (router == "top_k") EXPECT_DOUBLE_EQ(layer["active_mean"].get<double>(), 2.0);
  }
  if (router == "top_k" || router == "dynamoe") EXPECT_EQ(variable_layers, 0) << router << ": a fixed count per layer";
  if (router == "top_p" || router == "tsallis_hybrid" || router == "expert_choice")
    EXPECT_GT(variable_layers, 0) << router << ": the count should vary from token to token";
}

INSTANTIATE_TEST_SUITE_P(Routers, MoEFashion,
                         ::testing::Values("top_k", "top_p", "dynamoe", "tsallis_hybrid", "expert_choice"));
