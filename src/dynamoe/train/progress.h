#pragma once
// Training progress: a live, rewritten line on a terminal (step, loss, lr, samples/s, ETA);
// plain periodic lines when the output is a file or a pipe.
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>

namespace dynamoe::train {

class Progress {
 public:
  /// `live`: rewrite one line in place (use when the stream is a terminal).
  /// `unit` names what the rate counts ("samples", "tokens").
  Progress(std::ostream& out, bool live, int64_t first_step, int64_t total_steps, int64_t log_every,
           std::string unit = "samples");
  /// Reports the state after `step` optimizer steps.
  void update(int64_t step, double loss, double lr, double per_second);
  /// Prints a whole line (clearing the live line first).
  void message(const std::string& line);
  /// Ends the live line.
  void finish();

 private:
  std::string eta(int64_t step) const;
  std::ostream& out_;
  bool live_;
  int64_t first_step_, total_, log_every_;
  std::string unit_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace dynamoe::train
