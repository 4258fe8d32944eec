// The per-example evaluation record (train/per_example.h) and `dynamoe eval --per-example`: one
// row per test example (classifier) or scored token (language model) with its loss and its
// active experts in every MoE layer, the losses averaging to the printed loss, and the rank
// correlation printed per layer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "dynamoe/train/per_example.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;

namespace {

/// The rows of a CSV file (header first), split at commas.
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::istringstream cs(line);
    for (std::string c; std::getline(cs, c, ',');) cells.push_back(c);
    rows.push_back(cells);
  }
  return rows;
}

}  // namespace

TEST(PerExampleRecord, CollectsBatchesAndWritesOneRowPerItem) {
  train::PerExample rec;
  std::vector<moe::LayerStats> stats(2);
  stats[0].token_active = {1, 3};
  stats[1].token_active = {2, 2};
  rec.add(torch::tensor({0.5, 2.0}, torch::kDouble), torch::tensor({4, 7}), torch::tensor({4, 1}), stats);
  stats[0].token_active = {2};
  stats[1].token_active = {0};
  rec.add(torch::tensor({0.25f}), torch::tensor({3}), torch::tensor({3}), stats);
  EXPECT_EQ(rec.items(), 3);
  EXPECT_EQ(rec.active_mean(), (std::vector<double>{1.5, 2.5, 1.0}));
  testutil::TempDir tmp;
  rec.write_csv(tmp / "per_example.csv");
  EXPECT_EQ(read_file(tmp / "per_example.csv"),
            "item,label,prediction,loss,active_mean,active_0,active_1\n"
            "0,4,4,0.5,1.5,1,2\n"
            "1,7,1,2,2.5,3,2\n"
            "2,3,3,0.25,1,2,0\n");
  stats[0].token_active = {1, 1, 1};
  testutil::expect_error([&] { rec.add(torch::tensor({1.0}), torch::tensor({0}), torch::tensor({0}), stats); },
                         {"layer 0 routed 3 tokens for 1 items"});
}

TEST(PerExampleRecord, EvalWritesOneRowPerTestExample) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 300, 120);
  auto r = testutil::run_command(testutil::cli() + " train --plain --config " + testutil::source_dir() +
                                 "/configs/demo.yaml --name dk --set data.dataset=idx --set data.path=" + (tmp / "data") +
                                 " --set train.runs_dir=" + (tmp / "runs") +
                                 " --set train.steps=20 --set train.eval_every=20 --set train.warmup_steps=2"
                                 " --set model.d_model=32 --set moe.experts.hidden=32 --set train.threads=1"
                                 " --set moe.router.kind=dtop_p");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto e = testutil::run_command(testutil::cli() + " eval --checkpoint " + (tmp / "runs/dk") + " --per-example " +
                                 (tmp / "pe.csv"));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto rows = read_csv(tmp / "pe.csv");
  ASSERT_EQ(rows.size(), 121u) << "a header and one row per test example";
  EXPECT_EQ(rows[0], (std::vector<std::string>{"item", "label", "prediction", "loss", "active_mean", "active_0",
                                               "active_1", "active_2", "active_3"}));
  double loss = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 9u);
    loss += std::stod(rows[i][3]);
    for (int k = 5; k < 9; ++k) EXPECT_GE(std::stoi(rows[i][k]), 1) << "top-p keeps at least one expert";
  }
  std::smatch m;
  const std::string out = e.output;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("loss ([0-9.]+)"))) << out;
  EXPECT_NEAR(loss / 120, std::stod(m[1]), 1e-3);
  EXPECT_NE(out.find("per-example record: " + (tmp / "pe.csv") + " (120 rows)"), std::string::npos) << out;
  EXPECT_NE(out.find("active experts vs example loss, Spearman rho [95% CI]:  layer 0: "), std::string::npos) << out;
}
