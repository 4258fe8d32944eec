#include "dynamoe/report/run_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::report {
namespace fs = std::filesystem;
using nlohmann::json;

std::string RunData::label(const std::string& axis) const {
  for (const auto& [a, l] : axes)
    if (a == axis) return l;
  return "";
}

const std::vector<std::string>& SweepData::labels_of(const std::string& axis) const {
  static const std::vector<std::string> none;
  for (const auto& [a, l] : labels)
    if (a == axis) return l;
  return none;
}

std::string configuration_name(const SweepData& data, const RunData& run) {
  std::string name = run.grid;
  for (const auto& [a, l] : run.axes)
    if (a != data.layout.seed) name += (name.empty() ? "" : " ") + l;
  return name.empty() ? "all" : name;
}

namespace {

bool is_moe_layer(const std::string& layer) {
  const size_t at = layer.find("moe.");
  return at != std::string::npos && (at == 0 || layer[at - 1] == '.');
}

/// Reads config.yaml, summary.json and metrics.jsonl of a run folder into `r`.
void read_run(RunData& r) {
  const fs::path d = r.dir;
  std::error_code ec;
  if (fs::exists(d / "config.yaml", ec)) {
    try {
      r.config = config::parse_config(read_file((d / "config.yaml").string()), (d / "config.yaml").string());
    } catch (const Error&) {
      // an unreadable config leaves the run without one; the report says so
    }
  }
  if (fs::exists(d / "summary.json", ec)) {
    try {
      r.summary = json::parse(read_file((d / "summary.json").string()));
    } catch (const std::exception&) {
    }
  }
  std::ifstream in(d / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json row;
    try {
      row = json::parse(line);
    } catch (const std::exception&) {
      continue;  // a line cut by a kill
    }
    const std::string split = row.value("split", "");
    const int64_t step = row.value("step", int64_t{0});
    if (split == "test") {
      r.test_accuracy.push_back({step, row.value("accuracy", 0.0)});
      r.test_loss.push_back({step, row.value("loss", 0.0)});
    } else if (split == "val") {  // language models
      r.val_perplexity.push_back({step, row.value("perplexity", 0.0)});
      r.val_loss.push_back({step, row.value("loss", 0.0)});
    } else if (split == "train" && row.contains("loss") && row["loss"].is_number()) {
      r.train_loss.push_back({step, row["loss"].get<double>()});
    } else if (split == "gradnoise" && row.contains("layers")) {
      GradNoisePoint g;
      g.step = step;
      for (const auto& L : row["layers"]) {
        const double tv = L.value("trace_var", 0.0), mg = L.value("mean_grad_sq", 0.0);
        g.trace_var += tv;
        g.mean_grad_sq += mg;
        if (is_moe_layer(L.value("layer", ""))) {
          g.moe_trace_var += tv;
          g.moe_mean_grad_sq += mg;
        }
      }
      r.gradnoise.push_back(g);
    }
  }
  if (r.summary && r.seconds <= 0) r.seconds = r.summary->value("train_seconds_this_process", 0.0);
  if (r.status.empty()) r.status = r.summary ? "done" : "incomplete";
}

}  // namespace

SweepData load_sweep_data(const std::string& dir) {
  SweepData s;
  s.dir = dir;
  s.name = fs::path(dir).lexically_normal().filename().string();
  if (s.name.empty()) s.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  std::error_code ec;
  DYNAMOE_CHECK(fs::is_directory(dir, ec), "report: '", dir, "' is not a folder");
  const fs::path sweep_json = fs::path(dir) / "sweep.json";
  if (fs::exists(sweep_json, ec)) {
    json j;
    try {
      j = json::parse(read_file(sweep_json.string()));
    } catch (const std::exception& e) {
      throw Error(str("report: ", sweep_json.string(), ": ", e.what()));
    }
    s.name = j.value("name", s.name);
    // Axis order and labels from the grids (nlohmann::json sorts object keys; arrays keep order).
    for (const auto& g : j.value("grids", json::array())) {
      s.grid_order.push_back(g.value("name", ""));
      for (const auto& a : g.value("axes", json::array())) {
        const std::string name = a.value("name", "");
        if (std::find(s.axis_order.begin(), s.axis_order.end(), name) == s.axis_order.end()) {
          s.axis_order.push_back(name);
          s.labels.emplace_back(name, std::vector<std::string>{});
        }
        auto& labels = std::find_if(s.labels.begin(), s.labels.end(), [&](const auto& p) { return p.first == name; })->second;
        for (const auto& l : a.value("labels", json::array()))
          if (std::find(labels.begin(), labels.end(), l.get<std::string>()) == labels.end()) labels.push_back(l);
      }
    }
    const json lay = j.value("layout", json::object());
    s.layout.color = lay.value("color", "");
    s.layout.facet = lay.value("facet", "");
    s.layout.seed = lay.value("seed", "seed");
    for (const auto& x : lay.value("select", json::array())) s.layout.select.push_back(x);
    // Axis order of a run: the order of its grid's axes.
    std::map<std::string, std::vector<std::string>> grid_axes;
    for (const auto& g : j.value("grids", json::array()))
      for (const auto& a : g.value("axes", json::array())) grid_axes[g.value("name", "")].push_back(a.value("name", ""));
    for (const auto& jr : j.value("runs", json::array())) {
      RunData r;
      r.name = jr.value("name", "");
      r.grid = jr.value("grid", "");
      r.dir = (fs::path(dir) / r.name).string();
      r.status = jr.value("status", "");
      r.seconds = jr.value("seconds", 0.0);
      const json axes = jr.value("axes", json::object());
      for (const auto& name : grid_axes[r.grid])
        if (axes.contains(name)) r.axes.emplace_back(name, axes[name].get<std::string>());
      read_run(r);
      s.runs.push_back(std::move(r));
    }
  } else {
    // A plain folder of runs, or a single run folder: one axis "run".
    std::vector<std::string> names;
    const bool single = fs::exists(fs::path(dir) / "config.yaml", ec);
    fs::path single_dir = fs::path(dir).lexically_normal();
    if (single_dir.filename().empty()) single_dir = single_dir.parent_path();  // "runs/a/" -> "runs/a"
    if (single) {
      names.push_back(single_dir.filename().string());
    } else {
      for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_directory() && fs::exists(e.path() / "config.yaml")) names.push_back(e.path().filename().string());
      std::sort(names.begin(), names.end());
    }
    s.axis_order = {"run"};
    s.labels = {{"run", names}};
    s.grid_order = {""};
    s.layout.color = "run";
    s.layout.seed = "";
    for (const auto& n : names) {
      RunData r;
      r.name = n;
      r.dir = single ? single_dir.string() : (fs::path(dir) / n).string();
      r.axes = {{"run", n}};
      read_run(r);
      s.runs.push_back(std::move(r));
    }
  }
  DYNAMOE_CHECK(!s.runs.empty(), "report: '", dir, "' holds no runs (no sweep.json and no run folder with a config.yaml)");
  return s;
}

}  // namespace dynamoe::report
