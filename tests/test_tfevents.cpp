// TensorBoard event files (io/tfevents.h, train/metrics_log.h): CRC-32C against its check
// value, framing and a damaged record found, a resumed run's events trimmed like its metrics, and
// a trained run's event file read back by an independent reader (tests/python/read_tfevents.py,
// written from the file format alone) with every number of metrics.csv under its tag and the
// active-experts histograms equal to metrics.jsonl.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dynamoe/io/tfevents.h"
#include "dynamoe/train/metrics_log.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

using namespace dynamoe;
namespace fs = std::filesystem;

namespace {

std::vector<int64_t> steps_of(const std::string& path) {
  std::vector<int64_t> steps;
  for (const auto& [step, record] : io::read_event_records(read_file(path), path)) steps.push_back(step);
  return steps;
}

/// The reader's JSON lines.
std::vector<nlohmann::json> read_back(const std::string& path) {
  auto r = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() + "/tests/python/read_tfevents.py " + path +
                                 " 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<nlohmann::json> out;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST(TfEvents, Crc32cAndFraming) {
  EXPECT_EQ(io::crc32c("123456789", 9), 0xE3069283u);
  testutil::TempDir tmp;
  const std::string path = tmp / "events";
  {
    io::EventFile f(path, -1);
    f.write({io::scalar_event(1.5, 7, {{"train/loss", 0.25f}, {"train/lr", 1e-3f}})});
    io::Histogram h;
    h.limits = {0.5, 1.5};
    h.counts = {3, 4};
    f.write({io::histogram_event(2.5, 9, "train/moe/layer0/active_experts", h)});
  }
  EXPECT_EQ(steps_of(path), (std::vector<int64_t>{0, 7, 9}));
  const auto events = read_back(path);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
  EXPECT_EQ(events[1]["tag"], "train/loss");
  EXPECT_EQ(events[1]["simple_value"].get<double>(), 0.25);
  EXPECT_EQ(events[3]["histo"]["bucket"], (std::vector<double>{3, 4}));
  // A flipped data byte is found, naming the file and the record's offset.
  std::string bytes = read_file(path);
  bytes[bytes.size() - 10] ^= 0x40;
  write_file_atomic(path, bytes);
  testutil::expect_error([&] { io::read_event_records(read_file(path), path); }, {path, "checksum mismatch"});
  auto r = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() + "/tests/python/read_tfevents.py " + path);
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST(TfEvents, AResumedRunKeepsTheEventsUpToItsCheckpoint) {
  testutil::TempDir tmp;
  {
    train::MetricsLog log(tmp.str(), -1);
    for (int step = 1; step <= 5; ++step) log.write({{"step", step}, {"split", "train"}, {"loss", 1.0 / step}});
  }
  std::string bytes = read_file(tmp / train::MetricsLog::kEventFile);
  write_file_atomic(tmp / train::MetricsLog::kEventFile, bytes + bytes.substr(0, 30));  // a torn record, as after SIGKILL
  {
    train::MetricsLog log(tmp.str(), 3);
    log.write({{"step", 4}, {"split", "train"}, {"loss", 0.125}});
  }
  EXPECT_EQ(steps_of(tmp / train::MetricsLog::kEventFile), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  const auto events = read_back(tmp / train::MetricsLog::kEventFile);
  EXPECT_EQ(events.back()["simple_value"].get<double>(), 0.125);
}

TEST(TfEvents, ATrainedRunsEventsHoldEveryNumberOfItsMetrics) {
  testutil::TempDir tmp;
  testutil::write_synthetic_idx(tmp / "data", 300, 100);
  auto r = testutil::run_command(testutil::cli() + " train --plain --config " + testutil::source_dir() +
                                 "/configs/demo.yaml --name tb --set data.dataset=idx --set data.path=" + (tmp / "data") +
                                 " --set train.runs_dir=" + (tmp / "runs") +
                                 " --set train.steps=20 --set train.eval_every=10 --set train.log_every=5"
                                 " --set train.warmup_steps=2 --set model.d_model=32 --set moe.experts.hidden=32"
                                 " --set train.threads=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string run = tmp / "runs/tb";
  std::map<std::string, double> tb;  // "<step> <tag>" -> value
  std::map<std::string, std::vector<double>> hist;
  for (const auto& e : read_back(run + "/" + train::MetricsLog::kEventFile)) {
    const std::string at = std::to_string(e.value("step", 0)) + " " + e.value("tag", std::string());
    if (e.contains("simple_value")) tb[at] = e["simple_value"].get<double>();
    if (e.contains("histo")) hist[at] = e["histo"]["bucket"].get<std::vector<double>>();
  }
  // metrics.csv: every non-empty number is the event's value (float32, and the csv's 6 digits).
  std::istringstream csv(read_file(run + "/metrics.csv"));
  std::string header, line;
  std::getline(csv, header);
  std::vector<std::string> cols;
  for (std::istringstream hs(header); std::getline(hs, line, ',');) cols.push_back(line);
  int checked = 0;
  while (std::getline(csv, line)) {
    std::vector<std::string> cells;
    std::istringstream ls(line);
    for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
    cells.resize(cols.size());
    const std::string step = cells[0], split = cells[2];
    for (size_t c = 3; c < cols.size(); ++c) {
      if (cells[c].empty()) continue;
      const std::string key = step + " " + split + "/" + cols[c];
      ASSERT_TRUE(tb.count(key)) << "no event " << key;
      EXPECT_NEAR(tb[key], std::stod(cells[c]), 1e-5 * std::max(1.0, std::abs(std::stod(cells[c])))) << key;
      ++checked;
    }
    EXPECT_TRUE(tb.count(step + " " + split + "/epoch")) << step << " " << split;
  }
  EXPECT_GE(checked, 20);
  // metrics.jsonl: each MoE layer's active_hist is its histogram, and its numbers are scalars.
  std::istringstream jl(read_file(run + "/metrics.jsonl"));
  int histograms = 0;
  while (std::getline(jl, line)) {
    const auto row = nlohmann::json::parse(line);
    if (!row.contains("moe")) continue;
    const std::string head = std::to_string(row["step"].get<int64_t>()) + " " + row["split"].get<std::string>() + "/moe/layer";
    for (const auto& layer : row["moe"]) {
      const std::string l = std::to_string(layer["layer"].get<int>());
      EXPECT_EQ(hist[head + l + "/active_experts"], layer["active_hist"].get<std::vector<double>>()) << head << l;
      EXPECT_NEAR(tb[head + l + "/load_cv"], layer["load_cv"].get<double>(), 1e-6) << head << l;
      ++histograms;
    }
  }
  EXPECT_GE(histograms, 4 * 4) << "four train windows and two evals of four layers";
}
