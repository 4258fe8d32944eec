#pragma once
// Run metrics: one JSON object per line in metrics.jsonl (every value), a fixed-column
// metrics.csv (the scalar columns below), and a TensorBoard event file
// events.out.tfevents.dynamoe (every number of a row as a scalar "<split>/<key>", each MoE
// layer's numbers as "<split>/moe/layer<l>/<key>" and its active-experts histogram as
// "<split>/moe/layer<l>/active_experts"). Rows are flushed as they are written. On resume, rows
// past the checkpoint's step are dropped first, so all three read as one clean run.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace dynamoe::io {
class EventFile;
}

namespace dynamoe::train {

class MetricsLog {
 public:
  /// The fixed columns of metrics.csv, in order.
  static const std::vector<std::string>& csv_columns();
  /// The TensorBoard event file's name in the run folder.
  static constexpr const char* kEventFile = "events.out.tfevents.dynamoe";
  /// Opens (creating or, with resume_step >= 0, trimming to rows with step <= resume_step).
  MetricsLog(const std::string& run_dir, int64_t resume_step);
  /// A log that writes nothing (the processes other than rank 0 of a multi-process run).
  MetricsLog();
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  /// Appends a row; it must hold "step" and "split". A failed write (a full disk) throws,
  /// naming the file.
  void write(const nlohmann::json& row);
  /// The training time the run had logged before it was resumed (the largest elapsed_s among the
  /// rows kept; 0 for a new run): a resumed run's clock goes on from there.
  double elapsed_before() const { return elapsed_before_; }

 private:
  std::FILE* csv_ = nullptr;
  std::FILE* jsonl_ = nullptr;
  std::string csv_path_, jsonl_path_;
  std::unique_ptr<io::EventFile> events_;
  double elapsed_before_ = 0;
};

}  // namespace dynamoe::train
