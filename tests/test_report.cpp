// dynamoe report: PNG and base64 encoding, the easy/hard ranking, and the report of a tiny
// real sweep on Fashion-MNIST: its sections, its data (parsed back), its figures, that it needs
// no network, and that headless Chromium renders it with no console error (screenshot kept in
// the test's folder; skipped with a message when chromium is not installed).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "dynamoe/report/gallery.h"
#include "dynamoe/report/png.h"
#include "dynamoe/report/report.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;
namespace fs = std::filesystem;

namespace {

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}

}  // namespace

TEST(ReportPng, GreyImageRoundTripsThroughZlib) {
  const uint8_t px[6] = {0, 50, 100, 150, 200, 255};  // 3 x 2
  const std::string png = report::encode_png(px, 3, 2, 1);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR: width 3, height 2, depth 8, colour type 0.
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(png, 16), 3u);
  EXPECT_EQ(be32(png, 20), 2u);
  EXPECT_EQ(png[24], 8);
  EXPECT_EQ(png[25], 0);
  // Every chunk's CRC is over its type and data.
  size_t at = 8;
  std::string idat;
  while (at < png.size()) {
    const uint32_t len = be32(png, at);
    const std::string type = png.substr(at + 4, 4);
    const uint32_t crc = be32(png, at + 8 + len);
    EXPECT_EQ(crc, crc32(0L, reinterpret_cast<const Bytef*>(png.data() + at + 4), len + 4)) << type;
    if (type == "IDAT") idat = png.substr(at + 8, len);
    at += 12 + len;
  }
  EXPECT_EQ(at, png.size());
  uLongf n = 64;
  std::vector<uint8_t> raw(n);
  ASSERT_EQ(uncompress(raw.data(), &n, reinterpret_cast<const Bytef*>(idat.data()), idat.size()), Z_OK);
  EXPECT_EQ(std::vector<uint8_t>(raw.begin(), raw.begin() + n), (std::vector<uint8_t>{0, 0, 50, 100, 0, 150, 200, 255}));
  testutil::expect_error([&] { report::encode_png(px, 3, 2, 2); }, {"png"});
}

TEST(ReportPng, Base64MatchesRfc4648) {
  EXPECT_EQ(report::base64(""), "");
  EXPECT_EQ(report::base64("f"), "Zg==");
  EXPECT_EQ(report::base64("fo"), "Zm8=");
  EXPECT_EQ(report::base64("foo"), "Zm9v");
  EXPECT_EQ(report::base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(report::base64(std::string("\xff\x00\x10", 3)), "/wAQ");
}

TEST(ReportGallery, EasyAreFewestExpertsThenLowestEntropy) {
  report::ImageRouting r;
  r.active = {2, 1, 3, 1, 2, 3};
  r.entropy = {0.5, 0.9, 0.1, 0.2, 0.4, 0.7};
  auto [easy, hard] = report::easy_and_hard(r, 2);
  EXPECT_EQ(easy, (std::vector<int64_t>{3, 1}));  // 1 expert: entropy 0.2, then 0.9
  EXPECT_EQ(hard, (std::vector<int64_t>{5, 2}));  // 3 experts: entropy 0.7, then 0.1
  auto [e3, h3] = report::easy_and_hard(r, 10);   // no overlap: at most half each
  EXPECT_EQ(e3.size(), 3u);
  EXPECT_EQ(h3.size(), 3u);
  EXPECT_EQ(report::class_names("fashion-mnist", 10)[9], "Ankle boot");
  EXPECT_EQ(report::class_names("mnist", 10)[7], "7");
}

namespace {

/// A tiny sweep (3 runs of 24 steps on 512 Fashion-MNIST images) with its report, made once.
class ReportOfTinySweep : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new testutil::TempDir();
    const std::string data_dir = testutil::source_dir() + "/data";
    auto f = testutil::run_command(testutil::cli() + " data fetch fashion-mnist --data-dir " + data_dir);
    ASSERT_EQ(f.exit_code, 0) << f.output;
    write_file_atomic(*tmp_ / "tiny.yaml",
                      "name: tiny\n"
                      "base:\n"
                      "  model: {kind: moe_mlp, d_model: 16, moe_layers: 2}\n"
                      "  moe: {experts: {hidden: 16}, layers: {e_min: 2, e_max: 4}}\n"
                      "  data: {dataset: fashion-mnist, dir: " + data_dir + ", train_limit: 512, test_limit: 200}\n"
                      "  train: {steps: 24, batch_size: 32, eval_every: 12, log_every: 6, warmup_steps: 4,\n"
                      "          gradnoise_every: 12, gradnoise_batches: 2}\n"
                      "axes:\n"
                      "  moe.layers.schedule: [descending, ascending]\n"
                      "  router: {dynamoe: {moe.router.kind: dynamoe}, top_k: {moe.router.kind: top_k}}\n"
                      "  train.seed: [0]\n"
                      "extra:\n"
                      "  - {name: dense, set: {model.kind: mlp, model.hidden: [32]}}\n");
    auto s = testutil::run_command(testutil::cli() + " sweep " + (*tmp_ / "tiny.yaml") + " --runs-dir " + (*tmp_ / "runs") +
                                   " --jobs 2 --no-report");
    ASSERT_EQ(s.exit_code, 0) << s.output;
    report_ = new testutil::CommandResult(testutil::run_command(
        testutil::cli() + " report " + (*tmp_ / "runs/tiny") + " --library-dir " + data_dir + "/vega"));
  }
  static void TearDownTestSuite() {
    delete report_;
    delete tmp_;
  }
  static std::string dir() { return *tmp_ / "runs/tiny"; }
  static std::string html() { return read_file(dir() + "/report.html"); }
  static nlohmann::json data() {
    const std::string h = html();
    const std::string open = "<script type=\"application/json\" id=\"report-data\">";
    const size_t a = h.find(open), b = h.find("</script>", a);
    EXPECT_NE(a, std::string::npos);
    return nlohmann::json::parse(h.substr(a + open.size(), b - a - open.size()));
  }
  static testutil::TempDir* tmp_;
  static testutil::CommandResult* report_;
};
testutil::TempDir* ReportOfTinySweep::tmp_ = nullptr;
testutil::CommandResult* ReportOfTinySweep::report_ = nullptr;

}  // namespace

TEST_F(ReportOfTinySweep, HasEverySectionAndNeedsNoNetwork) {
  ASSERT_EQ(report_->exit_code, 0) << report_->output;
  const std::string h = html();
  for (const char* id : {"id=\"results\"", "id=\"accuracy\"", "id=\"curves\"", "id=\"layers\"", "id=\"load\"", "id=\"noise\"",
                         "id=\"gallery-section\"", "id=\"figures\"", "id=\"chart-gradnoise-ratio\"", "id=\"chart-load\""})
    EXPECT_NE(h.find(id), std::string::npos) << id;
  // The chart library is inside; nothing is loaded from elsewhere.
  EXPECT_NE(h.find("vegaEmbed"), std::string::npos);
  EXPECT_GT(h.size(), 700000u);
  for (const std::regex re : {std::regex("<script[^>]+src="), std::regex("<link[^>]+href=\"https?:"),
                              std::regex("<img[^>]+src=\"https?:")})
    EXPECT_FALSE(std::regex_search(h, re));
  EXPECT_EQ(report_->output.find("warning"), std::string::npos) << report_->output;
}

// A single run folder (it has a config.yaml) is a report of one run, written into it.
TEST_F(ReportOfTinySweep, ASingleRunFolderIsAReportOfOneRun) {
  std::string run;
  for (const auto& e : fs::directory_iterator(dir()))
    if (fs::exists(e.path() / "config.yaml")) run = e.path().string();
  ASSERT_FALSE(run.empty());
  auto r = testutil::run_command(testutil::cli() + " report " + run + "/ --no-gallery --no-figures --library-dir " +
                                 testutil::source_dir() + "/data/vega");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(run + "/report.html")) << r.output;
  const std::string h = read_file(run + "/report.html");
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  const size_t a = h.find(open), b = h.find("</script>", a);
  ASSERT_NE(a, std::string::npos);
  const nlohmann::json R = nlohmann::json::parse(h.substr(a + open.size(), b - a - open.size()));
  EXPECT_EQ(R["counts"]["runs"], 1);
  EXPECT_EQ(R["table"].size(), 1u);
}

TEST_F(ReportOfTinySweep, DataHoldsTheTableCurvesLayersNoiseAndGallery) {
  ASSERT_EQ(report_->exit_code, 0) << report_->output;
  const nlohmann::json R = data();
  EXPECT_EQ(R["title"], "tiny");
  EXPECT_EQ(R["counts"]["runs"], 5);
  EXPECT_EQ(R["counts"]["done"], 5);
  EXPECT_EQ(R["layout"]["color"], "schedule");
  EXPECT_EQ(R["layout"]["facet"], "router");
  EXPECT_EQ(R["colors"], (nlohmann::json{"descending", "ascending", "dense"}));
  EXPECT_EQ(R["facets"], (nlohmann::json{"dynamoe", "top_k", "dense"}));
  // One table row per configuration, each with its numbers.
  ASSERT_EQ(R["table"].size(), 5u);
  const auto& row = R["table"][0];
  EXPECT_EQ(row["axes"]["schedule"], "descending");
  EXPECT_EQ(row["n"], 1);
  EXPECT_GT(row["value_mean"].get<double>(), 0.2);
  EXPECT_EQ(row["experts"], "4 2");
  EXPECT_GT(row["params"].get<double>(), row["active_params"].get<double>());
  EXPECT_GT(row["flops"].get<double>(), 0);
  EXPECT_EQ(R["table"][4]["grid"], "dense");
  EXPECT_EQ(R["table"][4]["active_params"], R["table"][4]["params"]);
  // Curves at steps 12 and 24 for the test split, every 6 steps for training.
  int test_acc = 0, train_loss = 0;
  for (const auto& c : R["curves"]) {
    test_acc += c["metric"] == "test accuracy";
    train_loss += c["metric"] == "train loss";
  }
  EXPECT_EQ(test_acc, 5 * 2);
  EXPECT_EQ(train_loss, 5 * 4);
  EXPECT_EQ(R["layers"].size(), 4u * 2);   // 4 MoE runs x 2 layers
  EXPECT_EQ(R["loads"].size(), 4u * 6);    // 4 + 2 experts each
  EXPECT_EQ(R["gradnoise"].size(), 5u * 2);
  for (const auto& g : R["gradnoise"]) EXPECT_GT(g["trace"].get<double>(), 0);
  // Gallery: the two dynamoe runs, 12 easy and 12 hard images each, PNG data URIs.
  ASSERT_EQ(R["gallery"].size(), 2u);
  const auto& g = R["gallery"][0];
  EXPECT_EQ(g["run"], "descending-dynamoe-seed0");
  EXPECT_EQ(g["images"], 200);
  ASSERT_EQ(g["easy"].size(), 12u);
  ASSERT_EQ(g["hard"].size(), 12u);
  EXPECT_EQ(g["easy"][0]["src"].get<std::string>().rfind("data:image/png;base64,iVBORw0KGgo", 0), 0u);
  EXPECT_LE(g["easy"][0]["active"].get<double>(), g["hard"][0]["active"].get<double>());
  EXPECT_EQ(g["by_class"].size(), 10u);
  // results.json and results.md beside it.
  const auto results = nlohmann::json::parse(read_file(dir() + "/results.json"));
  EXPECT_EQ(results["table"].size(), 5u);
  EXPECT_NE(read_file(dir() + "/results.md").find("| descending dynamoe |"), std::string::npos);
}

TEST_F(ReportOfTinySweep, WritesSvgFiguresForPapers) {
  ASSERT_EQ(report_->exit_code, 0) << report_->output;
  EXPECT_TRUE(fs::exists(dir() + "/figures/gallery-descending-dynamoe-seed0.svg"));
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not installed: no chart SVGs";
  for (const char* f : {"accuracy.svg", "curve-test-accuracy.svg", "layers.svg", "load.svg", "gradnoise-ratio.svg"}) {
    const std::string path = dir() + "/figures/" + f;
    ASSERT_TRUE(fs::exists(path)) << path << "\n" << report_->output;
    const std::string svg = read_file(path);
    EXPECT_EQ(svg.rfind("<svg", 0), 0u) << path;
    EXPECT_NE(svg.find("</svg>"), std::string::npos) << path;
  }
}

TEST_F(ReportOfTinySweep, RendersInHeadlessChromiumWithoutConsoleErrors) {
  ASSERT_EQ(report_->exit_code, 0) << report_->output;
  if (std::system("command -v chromium > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh installs it): report not rendered";
  const std::string flags = " --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=" + (*tmp_ / "chromium") +
                            " --virtual-time-budget=15000 ";
  const std::string url = "file://" + dir() + "/report.html";
  // The page records console errors and warnings, uncaught exceptions and rejected promises, and
  // writes its status into #report-status once every chart is drawn.
  auto dom = testutil::run_command("chromium" + flags + "--dump-dom " + url + " 2>/dev/null");
  ASSERT_EQ(dom.exit_code, 0) << dom.output.substr(0, 2000);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom.output, m, std::regex("id=\"report-status\">([^<]*)<"))) << dom.output.substr(0, 2000);
  EXPECT_EQ(m[1].str(), "ok errors=0 warnings=0");
  EXPECT_NE(dom.output.find("data-report-status=\"ok\""), std::string::npos);
  // The charts were drawn (SVG elements from Vega) and the gallery filled.
  EXPECT_NE(dom.output.find("class=\"marks\""), std::string::npos);
  EXPECT_NE(dom.output.find("figure class=\"thumb\""), std::string::npos);
  // A screenshot, kept in the working directory (the build folder under ctest) for a person to look at.
  const std::string shot = (fs::current_path() / "report-screenshot.png").string();
  auto s = testutil::run_command("chromium" + flags + "--window-size=1280,3600 --screenshot=" + shot + " " + url);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  ASSERT_TRUE(fs::exists(shot)) << s.output;
  EXPECT_GT(fs::file_size(shot), 50000u);
  EXPECT_EQ(read_file(shot).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::cout << "screenshot: " << shot << " (" << fs::file_size(shot) << " bytes)\n";
}

namespace {

/// A folder of three finished language-model runs written by hand (no training): the report
/// leads with val perplexity, lower is better.
TEST(ReportOfLanguageModels, LeadsWithValPerplexityAndMarksTheLowestAsTiedOnOneSeed) {
  testutil::TempDir tmp;
  const std::vector<std::pair<std::string, double>> runs = {{"a", 9.5}, {"b", 7.25}, {"c", 8.0}};
  for (const auto& [name, ppl] : runs) {
    const std::string d = tmp / ("runs/" + name);
    fs::create_directories(d);
    write_file_atomic(d + "/config.yaml", "model: {kind: lm}\ndata: {dataset: python-docs, tokenizer: byte}\n");
    write_file_atomic(d + "/metrics.jsonl",
                      "{\"step\": 10, \"split\": \"train\", \"loss\": 3.0}\n"
                      "{\"step\": 10, \"split\": \"val\", \"loss\": 2.5, \"perplexity\": 12.18}\n"
                      "{\"step\": 20, \"split\": \"val\", \"loss\": " + std::to_string(std::log(ppl)) +
                          ", \"perplexity\": " + std::to_string(ppl) + "}\n");
    write_file_atomic(d + "/summary.json", nlohmann::json{{"val_perplexity", ppl}, {"val_loss", std::log(ppl)},
                                                          {"parameters", 1000}}.dump());
  }
  report::ReportOptions o;
  o.gallery = false;
  o.figures = false;
  o.library_dir = tmp / "no-library";  // offline: the charts are left out with a warning
  const auto res = report::write_report(tmp / "runs", o);
  const std::string h = read_file(res.html);
  EXPECT_NE(h.find("id=\"perplexity\""), std::string::npos);
  EXPECT_NE(h.find("id=\"chart-curve-val-perplexity\""), std::string::npos);
  EXPECT_EQ(h.find("id=\"chart-accuracy\""), std::string::npos);
  EXPECT_EQ(h.find("id=\"gallery-section\""), std::string::npos) << "no test images to rank";
  EXPECT_EQ(h.find("id=\"noise\""), std::string::npos) << "no gradient noise for language models";
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  const size_t a = h.find(open), b = h.find("</script>", a);
  const auto R = nlohmann::json::parse(h.substr(a + open.size(), b - a - open.size()));
  EXPECT_EQ(R["metric"]["id"], "perplexity");
  EXPECT_EQ(R["metric"]["higher"], false);
  ASSERT_EQ(R["table"].size(), 3u);
  EXPECT_DOUBLE_EQ(R["table"][1]["value_mean"].get<double>(), 7.25);
  EXPECT_EQ(R["table"][1]["best"], "tied") << "one seed each: the lowest mean is not a significant best";
  EXPECT_FALSE(R["table"][0].contains("best"));
  EXPECT_NEAR(R["table"][1]["loss_mean"].get<double>(), std::log(7.25), 1e-6);
  int val_points = 0;
  for (const auto& c : R["curves"]) val_points += c["metric"] == "val perplexity";
  EXPECT_EQ(val_points, 6);
  const std::string md = read_file(tmp / "runs/results.md");
  EXPECT_NE(md.find("| configuration | seeds | val perplexity |"), std::string::npos) << md;
  EXPECT_NE(md.find("| b | 1 | 7.25 ± "), std::string::npos) << md;
}

}  // namespace

// scripts/check-report.sh passes a page whose status is clean even with no chart or gallery
// image (it used to exit 1 silently), and says why it fails a page without a status.
TEST(CheckReportScript, CountsNothingAsZeroAndExplainsAFailure) {
  testutil::TempDir tmp;
  const std::string script = "bash " + testutil::source_dir() + "/scripts/check-report.sh ";
  write_file_atomic(tmp / "clean.html", "<html><body><p id=\"report-status\">ok errors=0 warnings=0</p></body></html>");
  auto r = testutil::run_command(script + (tmp / "clean.html") + " " + (tmp / "clean.png"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("0 charts drawn, 0 gallery images"), std::string::npos) << r.output;
  write_file_atomic(tmp / "other.html", "<html><body><p>not a report</p></body></html>");
  r = testutil::run_command(script + (tmp / "other.html") + " " + (tmp / "other.png"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FAILED: the page recorded no status"), std::string::npos) << r.output;
}
