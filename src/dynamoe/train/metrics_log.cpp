#include "dynamoe/train/metrics_log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

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
}

}  // namespace dynamoe::train
