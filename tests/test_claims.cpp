// dynamoe results: the statistics (against textbook values), the claim verdicts on synthetic
// sweeps built to be confirmed, refuted or undecided, the sweep file's `results:` errors, and
// the results page of a tiny real sweep.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <filesystem>
#include <random>

#include "dynamoe/report/claims.h"
#include "dynamoe/report/stats.h"
#include "dynamoe/sweep/sweep_spec.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;
using namespace dynamoe::report;

namespace {

/// Expects a one-line ConfigError containing every one of `parts`.
void expect_config_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  const std::string msg = testutil::config_error(f);
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

TEST(Stats, IncompleteBetaIdentities) {
  for (double x : {0.0, 0.1, 0.37, 0.5, 0.9, 1.0}) {
    EXPECT_NEAR(incomplete_beta(1, 1, x), x, 1e-12);
    EXPECT_NEAR(incomplete_beta(3, 1, x), x * x * x, 1e-12);
    EXPECT_NEAR(incomplete_beta(1, 2, x), 1 - (1 - x) * (1 - x), 1e-12);
    EXPECT_NEAR(incomplete_beta(2.5, 0.7, x), 1 - incomplete_beta(0.7, 2.5, 1 - x), 1e-12);
  }
}

TEST(Stats, StudentAndFisherTailsMatchTables) {
  // two-sided 5% and 1% critical values of Student's t
  EXPECT_NEAR(student_t_p(2.776445, 4), 0.05, 1e-6);
  EXPECT_NEAR(student_t_p(-2.228139, 10), 0.05, 1e-6);
  EXPECT_NEAR(student_t_p(4.604095, 4), 0.01, 1e-6);
  EXPECT_NEAR(student_t_p(1.959964, 1e7), 0.05, 1e-5);  // the normal limit
  EXPECT_NEAR(student_t_p(1.0, 1), 0.5, 1e-12);         // Cauchy: P(|T| > 1) = 1/2
  EXPECT_DOUBLE_EQ(student_t_p(0, 3), 1.0);
  // upper 5% points of F
  EXPECT_NEAR(f_upper_p(4.102821, 2, 10), 0.05, 1e-6);
  EXPECT_NEAR(f_upper_p(2.710890, 5, 20), 0.05, 1e-5);  // R: qf(0.95, 5, 20)
  // F(1, d) = t(d)^2
  EXPECT_NEAR(f_upper_p(16, 1, 4), student_t_p(4, 4), 1e-12);
}

TEST(Stats, WelchTest) {
  const WelchTest w = welch_test({1, 2, 3}, {4, 5, 6});
  EXPECT_DOUBLE_EQ(w.diff, -3);
  EXPECT_NEAR(w.t, -3 / std::sqrt(2.0 / 3.0), 1e-12);
  EXPECT_NEAR(w.df, 4, 1e-12);
  EXPECT_NEAR(w.p, 0.021311641128756, 1e-9);  // scipy.stats.ttest_ind(equal_var=False)
  // unequal variances and sizes: df from Welch-Satterthwaite
  const WelchTest u = welch_test({10, 12, 14, 16}, {9, 9.5});
  const double va = (20.0 / 3.0) / 4, vb = 0.125 / 2;
  EXPECT_NEAR(u.df, (va + vb) * (va + vb) / (va * va / 3 + vb * vb / 1), 1e-9);
  EXPECT_NEAR(u.t, (13 - 9.25) / std::sqrt(va + vb), 1e-12);
  // no variance: exact answers; one value: no test
  EXPECT_DOUBLE_EQ(welch_test({1, 1}, {2, 2}).p, 0.0);
  EXPECT_DOUBLE_EQ(welch_test({1, 1}, {1, 1}).p, 1.0);
  EXPECT_DOUBLE_EQ(welch_test({1}, {2, 3}).p, 1.0);
}

TEST(Stats, BestOfMarksOnlyASignificantMargin) {
  // Clearly apart (three seeds each): the best beats the runner-up.
  auto b = best_of({{0.80, 0.81, 0.79}, {0.90, 0.91, 0.905}, {0.85, 0.86, 0.84}}, /*higher=*/true);
  EXPECT_EQ(b.best, 1);
  EXPECT_EQ(b.runner_up, 2);
  EXPECT_TRUE(b.significant);
  EXPECT_LT(b.p, 0.01);
  // Within noise: tied.
  b = best_of({{0.90, 0.80, 0.85}, {0.86, 0.84, 0.83}}, true);
  EXPECT_EQ(b.best, 0);
  EXPECT_FALSE(b.significant);
  EXPECT_GT(b.p, 0.05);
  // Lower is better (perplexity); one seed each can never be told apart; one configuration has
  // nothing to beat.
  b = best_of({{9.5}, {7.25}, {8.0}}, false);
  EXPECT_EQ(b.best, 1);
  EXPECT_EQ(b.runner_up, 2);
  EXPECT_FALSE(b.significant);
  EXPECT_EQ(best_of({{0.9, 0.91}}, true).best, -1);
  EXPECT_EQ(best_of({{}, {0.5}}, true).best, -1);
}

TEST(Stats, InteractionTestOnACrossover) {
  // cell means 2 6 / 6 2: all of the effect is interaction. SS_AB = 2 * 16, MS_E = 8 / 4
  const InteractionTest t = interaction_test({{{1, 3}, {5, 7}}, {{5, 7}, {1, 3}}});
  EXPECT_NEAR(t.f, 16, 1e-12);
  EXPECT_DOUBLE_EQ(t.df_interaction, 1);
  EXPECT_DOUBLE_EQ(t.df_error, 4);
  EXPECT_NEAR(t.p, student_t_p(4, 4), 1e-12);
  EXPECT_NEAR(t.p_main_a, 1.0, 1e-12);
  // additive effects: no interaction at all, a strong main effect of A
  const InteractionTest add = interaction_test({{{1, 3}, {11, 13}}, {{5, 7}, {15, 17}}});
  EXPECT_NEAR(add.f, 0, 1e-12);
  EXPECT_NEAR(add.p, 1, 1e-12);
  // row means 7 and 11: SS_A = 2 (replicates) x 2 (columns) x (4 + 4) = 32, MS_E = 2: F(1, 4) = 16 = t(4)^2
  EXPECT_NEAR(add.p_main_a, student_t_p(4, 4), 1e-12);
}

/// A synthetic sweep: schedule x dataset x size x seed, test accuracy = f(schedule, dataset, size) + noise.
SweepData synthetic(const std::function<double(int, int, int)>& mean_acc, double noise, int seeds = 3) {
  SweepData s;
  s.layout.seed = "seed";
  const std::vector<std::string> schedules = {"uniform", "descending", "ascending"}, datasets = {"mnist", "fashion"},
                                 sizes = {"s", "m"};
  s.labels = {{"schedule", schedules}, {"dataset", datasets}, {"size", sizes}};
  std::mt19937 rng(7);
  std::normal_distribution<double> n(0, noise);
  for (int a = 0; a < 3; ++a)
    for (int d = 0; d < 2; ++d)
      for (int z = 0; z < 2; ++z)
        for (int k = 0; k < seeds; ++k) {
          RunData r;
          r.name = schedules[a] + "-" + datasets[d] + "-" + sizes[z] + "-seed" + std::to_string(k);
          r.axes = {{"schedule", schedules[a]}, {"dataset", datasets[d]}, {"size", sizes[z]}, {"seed", "seed" + std::to_string(k)}};
          r.summary = nlohmann::json{{"test_accuracy", mean_acc(a, d, z) + n(rng)}};
          for (int step : {100, 200}) r.gradnoise.push_back({step, (a == 1 ? 0.5 : 1.0) * (1 + z) * (1 + 0.01 * n(rng)), 1, 0, 0});
          s.runs.push_back(r);
        }
  return s;
}

sweep::ClaimSpec compare_claim(const std::string& metric = "test_accuracy") {
  sweep::ClaimSpec c;
  c.id = "c";
  c.claim = "descending beats uniform";
  c.kind = "compare";
  c.axis = "schedule";
  c.better = {"descending"};
  c.than = "uniform";
  c.metric = metric;
  c.maximize = metric == "test_accuracy";
  return c;
}

sweep::ClaimSpec best_claim() {
  sweep::ClaimSpec c;
  c.id = "b";
  c.claim = "the best schedule depends on the dataset";
  c.kind = "best";
  c.axis = "schedule";
  c.across = {"dataset"};
  c.metric = "test_accuracy";
  return c;
}

TEST(Claims, CompareConfirmedRefutedOrNoise) {
  const auto c = compare_claim();
  // descending 1 point better everywhere, noise 0.2 points
  auto up = evaluate_claim(synthetic([](int a, int, int) { return 0.9 + (a == 1 ? 0.01 : 0.0); }, 0.002), c);
  EXPECT_EQ(up.verdict, "confirmed") << up.answer;
  ASSERT_EQ(up.summaries.size(), 1u);
  EXPECT_EQ(up.summaries[0].cells, 4);
  EXPECT_NEAR(up.summaries[0].gain, 0.01, 0.003);
  EXPECT_EQ(up.rows.size(), 4u);
  EXPECT_EQ(up.runs, 36);
  EXPECT_NE(up.answer.find("points"), std::string::npos) << up.answer;
  // one point worse everywhere
  auto down = evaluate_claim(synthetic([](int a, int, int) { return 0.9 - (a == 1 ? 0.01 : 0.0); }, 0.002), c);
  EXPECT_EQ(down.verdict, "refuted") << down.answer;
  // no difference, noise of a point
  auto flat = evaluate_claim(synthetic([](int, int, int) { return 0.9; }, 0.01), c);
  EXPECT_EQ(flat.verdict, "not distinguishable from noise") << flat.answer;
  EXPECT_GT(flat.summaries[0].p, 0.05);
  // restricting to one cell with `where`
  auto only = c;
  only.where = {{"dataset", "mnist"}, {"size", "s"}};
  auto one = evaluate_claim(synthetic([](int a, int, int) { return 0.9 + (a == 1 ? 0.01 : 0.0); }, 0.002), only);
  EXPECT_EQ(one.summaries[0].cells, 1);
  EXPECT_EQ(one.runs, 9);
}

TEST(Claims, GradientNoiseIsComparedAsARatio) {
  // descending has half the noise of uniform at both sizes (1x and 2x): a ratio of 0.5
  auto r = evaluate_claim(synthetic([](int, int, int) { return 0.9; }, 0.01), compare_claim("gradnoise_trace"));
  EXPECT_EQ(r.verdict, "confirmed") << r.answer;
  EXPECT_NEAR(r.summaries[0].gain, std::log(2.0), 0.02);
  EXPECT_NE(r.answer.find("x0.50"), std::string::npos) << r.answer;
}

TEST(Claims, BestDependsOrNot) {
  // crossover: descending best on mnist, ascending best on fashion
  auto cross = evaluate_claim(
      synthetic([](int a, int d, int) { return 0.9 + (d == 0 ? (a == 1 ? 0.02 : 0.0) : (a == 2 ? 0.02 : 0.0)); }, 0.002),
      best_claim());
  EXPECT_EQ(cross.verdict, "confirmed") << cross.answer;
  ASSERT_EQ(cross.strata.size(), 2u);  // the size axis is a stratum
  EXPECT_LT(cross.strata[0].test.p, 0.025);
  ASSERT_EQ(cross.cells.size(), 4u);
  EXPECT_EQ(cross.cells[0].ranked[0].label, "descending");
  // descending best everywhere by 2 points: one schedule for every task
  auto same = evaluate_claim(synthetic([](int a, int, int) { return 0.9 + (a == 1 ? 0.02 : 0.0); }, 0.002), best_claim());
  EXPECT_EQ(same.verdict, "refuted") << same.answer;
  // nothing but noise
  auto noise = evaluate_claim(synthetic([](int, int, int) { return 0.9; }, 0.01), best_claim());
  EXPECT_EQ(noise.verdict, "not distinguishable from noise") << noise.answer;
  // the claimed best per dataset
  auto expect = best_claim();
  expect.expect = {{"mnist", "descending"}, {"fashion", "uniform"}};
  auto e = evaluate_claim(synthetic([](int a, int, int) { return 0.9 + (a == 1 ? 0.02 : 0.0); }, 0.002), expect);
  EXPECT_NE(e.answer.find("matches in 2 of 4 cells"), std::string::npos) << e.answer;
}

const char* kStudy = R"(
name: study
base: {model: {kind: moe_mlp, d_model: 16, moe_layers: 2}, moe: {experts: {hidden: 8}}}
axes:
  moe.layers.schedule: [uniform, descending]
  dataset: {mnist: {data.dataset: mnist}, fashion: {data.dataset: fashion-mnist}}
  train.seed: [0, 1]
extra:
  - {name: dense, set: {model.kind: mlp}, axes: {train.seed: same}}
)";

TEST(ClaimSpecs, ParsedAndCheckedAgainstTheGrid) {
  const std::string ok = std::string(kStudy) +
                         "results:\n  title: T\n  out: ../docs/x.md\n  figures: [accuracy-*.svg]\n  claims:\n"
                         "    - {id: a, claim: A, metric: test_accuracy, compare: {axis: schedule, better: descending, than: uniform}}\n"
                         "    - {id: b, claim: B, metric: test_loss, best: {axis: schedule, across: dataset, expect: {mnist: uniform}}}\n"
                         "    - {id: c, claim: C, metric: gradnoise_ratio, goal: max, grid: dense, compare: {axis: seed0, better: x, than: y}}\n";
  // the third claim names an axis the dense grid does not have
  expect_config_error([&] { sweep::parse_sweep(ok, "/s/study.yaml"); }, {"study.yaml:", "claim 'c'", "no axis 'seed0'"});
  const std::string good = ok.substr(0, ok.find("    - {id: c"));
  const sweep::SweepSpec spec = sweep::parse_sweep(good, "/s/study.yaml");
  ASSERT_EQ(spec.results.claims.size(), 2u);
  EXPECT_EQ(spec.results.title, "T");
  EXPECT_EQ(spec.results.out, "/docs/x.md");  // relative to the sweep file
  EXPECT_EQ(spec.results.claims[0].better, std::vector<std::string>{"descending"});
  EXPECT_TRUE(spec.results.claims[0].maximize);
  EXPECT_FALSE(spec.results.claims[1].maximize);
  EXPECT_EQ(spec.results.claims[1].across, std::vector<std::string>{"dataset"});
  EXPECT_EQ(spec.results.claims[1].expect.at("mnist"), "uniform");

  auto bad = [&](const std::string& claim, const std::vector<std::string>& parts) {
    expect_config_error([&] { sweep::parse_sweep(std::string(kStudy) + "results:\n  claims:\n    - " + claim + "\n", "s.yaml"); }, parts);
  };
  bad("{id: a, claim: A, metric: accuracy, compare: {axis: schedule, better: descending, than: uniform}}",
      {"s.yaml:", "unknown metric 'accuracy'", "test_accuracy"});
  bad("{id: a, claim: A, metric: test_accuracy, compare: {axis: schedule, better: wave, than: uniform}}",
      {"axis 'schedule' has no value 'wave'", "uniform, descending"});
  bad("{id: a, claim: A, metric: test_accuracy, compare: {axis: router, better: x, than: y}}", {"main grid has no axis 'router'"});
  bad("{id: a, claim: A, metric: test_accuracy}", {"exactly one of compare"});
  bad("{id: a, claim: A, metric: test_accuracy, best: {axis: schedule}}", {"best needs 'across'"});
  bad("{id: a, claim: A, metric: test_accuracy, best: {axis: schedule, across: [seed]}}", {"'seed' is not another axis"});
  bad("{id: a, claim: A, metric: test_accuracy, compare: {axis: seed, better: seed0, than: seed1}}", {"'seed' is the seed axis"});
  bad("{id: a, claim: A, metric: test_accuracy, colour: red, compare: {axis: schedule, better: descending, than: uniform}}",
      {"unknown entry 'colour'"});
  bad("{claim: A, metric: test_accuracy}", {"a claim needs 'id'"});
}

TEST(ResultsCli, PageOfATinySweep) {
  testutil::TempDir tmp;
  const std::string data_dir = testutil::source_dir() + "/data";
  auto f = testutil::run_command(testutil::cli() + " data fetch fashion-mnist --data-dir " + data_dir);
  ASSERT_EQ(f.exit_code, 0) << f.output;
  write_file_atomic(tmp / "tiny.yaml",
                    "name: tiny\n"
                    "base:\n"
                    "  model: {kind: moe_mlp, d_model: 16, moe_layers: 2}\n"
                    "  moe: {experts: {hidden: 16}, layers: {e_min: 2, e_max: 4}}\n"
                    "  data: {dataset: fashion-mnist, dir: " + data_dir + ", train_limit: 512, test_limit: 200}\n"
                    "  train: {steps: 12, batch_size: 32, eval_every: 12, log_every: 6, warmup_steps: 2,\n"
                    "          gradnoise_every: 6, gradnoise_batches: 2, threads: 1}\n"
                    "axes:\n"
                    "  moe.layers.schedule: [uniform, descending]\n"
                    "  train.seed: [0, 1]\n"
                    "results:\n"
                    "  title: Tiny study\n"
                    "  out: page/tiny.md\n"
                    "  intro: The intro text.\n"
                    "  claims:\n"
                    "    - {id: desc, claim: Descending beats uniform, metric: test_accuracy,\n"
                    "       compare: {axis: schedule, better: descending, than: uniform}}\n"
                    "    - {id: noise, claim: Descending lowers noise, metric: gradnoise_trace,\n"
                    "       compare: {axis: schedule, better: descending, than: uniform}}\n"
                    "    - {id: ratio, claim: Descending lowers relative noise, metric: gradnoise_ratio,\n"
                    "       compare: {axis: schedule, better: descending, than: uniform}}\n");
  // before the sweep: a clear error naming the command to run
  auto r = testutil::run_command(testutil::cli() + " results " + (tmp / "tiny.yaml") + " --runs-dir " + (tmp / "runs"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("dynamoe sweep"), std::string::npos) << r.output;
  auto s = testutil::run_command(testutil::cli() + " sweep " + (tmp / "tiny.yaml") + " --runs-dir " + (tmp / "runs") +
                                 " --jobs 2 --no-report");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  r = testutil::run_command(testutil::cli() + " results " + (tmp / "tiny.yaml") + " --runs-dir " + (tmp / "runs"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string page = read_file(tmp / "page/tiny.md");
  for (const char* part : {"# Tiny study", "The intro text.", "## Answers", "Descending beats uniform", "**Answer: ",
                           "## Every configuration", "| uniform | 2/2 |", "| descending | 2/2 |", "gradient noise tr Var(g)",
                           "dynamoe results "})
    EXPECT_NE(page.find(part), std::string::npos) << part << "\n" << page;
  // every row of the configuration table has as many cells as its header (the ratio metric's
  // title "tr Var(g) / |mean g|^2" has pipes, escaped in the table)
  const size_t table = page.find("| configuration |");
  ASSERT_NE(table, std::string::npos) << page;
  auto cells = [](const std::string& line) {
    size_t n = 0;
    for (size_t i = 0; i < line.size(); ++i) n += line[i] == '|' && (i == 0 || line[i - 1] != '\\');
    return n;
  };
  size_t at = table, header_cells = 0, rows = 0;
  for (std::string line; at < page.size() && page[at] == '|'; at = page.find('\n', at) + 1, ++rows) {
    line = page.substr(at, page.find('\n', at) - at);
    if (rows == 0) header_cells = cells(line);
    EXPECT_EQ(cells(line), header_cells) << line;
  }
  EXPECT_EQ(rows, 4u);  // header, rule, uniform, descending
  // each claim gets one of the verdicts
  for (const char* id : {"desc: ", "noise: ", "ratio: "}) {
    const size_t at = r.output.find(id);
    ASSERT_NE(at, std::string::npos) << r.output;
    const std::string v = r.output.substr(at + std::string(id).size(), r.output.find('\n', at) - at - std::string(id).size());
    EXPECT_TRUE(v == "confirmed" || v == "refuted" || v == "not distinguishable from noise") << v;
  }
}

}  // namespace
