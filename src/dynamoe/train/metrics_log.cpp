#include "dynamoe/train/metrics_log.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "dynamoe/io/tfevents.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
namespace fs = std::filesystem;
namespace {

/// Keeps the lines whose step (found by `step_of`) is <= max_step; rewrites atomically.
template <typename StepOf>
void trim_file(const std::string& path, int64_t max_step, bool keep_first_line, StepOf step_of) {
  if (!fs::exists(path)) return;
  std::istringstream in(read_file(path));
  std::string out, line;
  bool first = true;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (first && keep_first_line) {
      out += line + "\n";
    } else {
      int64_t step = -1;
      try {
        step = step_of(line);
      } catch (...) {
        step = -1;  // a torn last line from a killed process
      }
      if (step >= 0 && step <= max_step) out += line + "\n";
    }
    first = false;
  }
  write_file_atomic(path, out);
}

std::string csv_value(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.6g", v.get<double>());
    return buf;
  }
  return v.dump();
}

/// The TensorBoard events of a metrics row: its numbers as scalars "<split>/<key>", each MoE
/// layer's numbers (and its losses and router state) under "<split>/moe/layer<l>/", and the
/// layer's tokens per count of active experts as a histogram (bucket c: (c - 0.5, c + 0.5]).
std::vector<std::string> row_events(const nlohmann::json& row) {
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const int64_t step = row.at("step").get<int64_t>();
  const std::string split = row.at("split").get<std::string>();
  std::vector<std::pair<std::string, float>> scalars;
  std::vector<std::string> events;
  for (const auto& [key, v] : row.items())
    if (key != "step" && v.is_number()) scalars.emplace_back(split + "/" + key, v.get<float>());
  if (row.contains("moe") && row["moe"].is_array()) {
    for (const auto& layer : row["moe"]) {
      const std::string head = split + "/moe/layer" + std::to_string(layer.value("layer", 0)) + "/";
      for (const auto& [key, v] : layer.items()) {
        if (key == "layer") continue;
        if (v.is_number()) scalars.emplace_back(head + key, v.get<float>());
        if (v.is_object())
          for (const auto& [name, x] : v.items())
            if (x.is_number()) scalars.emplace_back(head + key + "/" + name, x.get<float>());
      }
      if (layer.contains("active_hist") && layer["active_hist"].is_array() && !layer["active_hist"].empty()) {
        io::Histogram h;
        bool any = false;
        const auto& hist = layer["active_hist"];
        for (size_t c = 0; c < hist.size(); ++c) {
          const double n = hist[c].get<double>(), x = static_cast<double>(c);
          h.limits.push_back(x + 0.5);
          h.counts.push_back(n);
          if (n > 0) {
            h.min = any ? std::min(h.min, x) : x;
            h.max = any ? std::max(h.max, x) : x;
            any = true;
          }
          h.num += n;
          h.sum += n * x;
          h.sum_squares += n * x * x;
        }
        events.push_back(io::histogram_event(now, step, head + "active_experts", h));
      }
    }
  }
  if (!scalars.empty()) events.insert(events.begin(), io::scalar_event(now, step, scalars));
  return events;
}

}  // namespace

const std::vector<std::string>& MetricsLog::csv_columns() {
  static const std::vector<std::string> cols = {"step", "epoch", "split", "loss", "accuracy", "lr",
                                                "grad_norm", "samples_per_s", "elapsed_s", "aux_loss", "active_experts",
                                                "perplexity", "tokens_per_s"};
  return cols;
}

MetricsLog::MetricsLog(const std::string& run_dir, int64_t resume_step) {
  const std::string csv_path = (fs::path(run_dir) / "metrics.csv").string();
  const std::string jsonl_path = (fs::path(run_dir) / "metrics.jsonl").string();
  if (resume_step >= 0) {
    trim_file(csv_path, resume_step, true, [](const std::string& l) { return std::stoll(l.substr(0, l.find(','))); });
    trim_file(jsonl_path, resume_step, false,
              [](const std::string& l) { return nlohmann::json::parse(l).at("step").get<int64_t>(); });
    // The clock of the resumed run goes on from the last row kept.
    if (fs::exists(jsonl_path)) {
      std::istringstream in(read_file(jsonl_path));
      for (std::string line; std::getline(in, line);) {
        const nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (row.is_object() && row.contains("elapsed_s") && row["elapsed_s"].is_number())
          elapsed_before_ = std::max(elapsed_before_, row["elapsed_s"].get<double>());
      }
    }
  }
  csv_path_ = csv_path;
  jsonl_path_ = jsonl_path;
  events_ = std::make_unique<io::EventFile>((fs::path(run_dir) / kEventFile).string(), resume_step);
  const bool new_csv = !fs::exists(csv_path) || fs::file_size(csv_path) == 0;
  csv_ = std::fopen(csv_path.c_str(), "a");
  jsonl_ = std::fopen(jsonl_path.c_str(), "a");
  DYNAMOE_CHECK(csv_ && jsonl_, "cannot open metrics files in '", run_dir, "'");
  if (new_csv) {
    std::string header;
    for (const auto& c : csv_columns()) header += (header.empty() ? "" : ",") + c;
    std::fprintf(csv_, "%s\n", header.c_str());
    std::fflush(csv_);
  }
}

MetricsLog::MetricsLog() = default;

MetricsLog::~MetricsLog() {
  if (csv_) std::fclose(csv_);
  if (jsonl_) std::fclose(jsonl_);
}

void MetricsLog::write(const nlohmann::json& row) {
  DYNAMOE_CHECK(row.contains("step") && row.contains("split"), "metrics row needs step and split");
  std::string line;
  for (const auto& c : csv_columns()) line += (line.empty() ? "" : ",") + (row.contains(c) ? csv_value(row[c]) : "");
  if (!csv_) return;  // a log that writes nothing
  auto put = [](std::FILE* f, const std::string& text, const std::string& path) {
    if (std::fputs(text.c_str(), f) < 0 || std::fflush(f) != 0)
      throw Error(str("could not write ", path, ": ", std::strerror(errno)));
  };
  put(csv_, line + "\n", csv_path_);
  put(jsonl_, row.dump() + "\n", jsonl_path_);
  if (events_) events_->write(row_events(row));
}

}  // namespace dynamoe::train
