#include "dynamoe/train/progress.h"

#include <cstdio>

namespace dynamoe::train {

Progress::Progress(std::ostream& out, bool live, int64_t first_step, int64_t total_steps, int64_t log_every,
                   std::string unit)
    : out_(out), live_(live), first_step_(first_step), total_(total_steps), log_every_(log_every),
      unit_(std::move(unit)), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

std::string Progress::eta(int64_t step) const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = step - first_step_;
  if (done <= 0) return "?";
  const double left = elapsed / done * (total_ - step);
  char buf[32];
  int s = static_cast<int>(left + 0.5);
  std::snprintf(buf, sizeof(buf), "%d:%02d", s / 60, s % 60);
  return buf;
}

void Progress::update(int64_t step, double loss, double lr, double per_second) {
  char line[256];
  const int width = static_cast<int>(std::to_string(total_).size());
  std::snprintf(line, sizeof(line), "step %*lld/%lld  loss %.4f  lr %.3g  %.0f %s/s  ETA %s", width,
                static_cast<long long>(step), static_cast<long long>(total_), loss, lr, per_second, unit_.c_str(),
                eta(step).c_str());
  if (live_) {
    auto now = std::chrono::steady_clock::now();
    if (step != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    out_ << "\r\033[K" << line << std::flush;
    dirty_ = true;
  } else if (step % log_every_ == 0 || step == total_) {
    out_ << line << "\n" << std::flush;
  }
}

void Progress::message(const std::string& line) {
  if (dirty_) out_ << "\r\033[K";
  out_ << line << "\n" << std::flush;
  dirty_ = false;
}

void Progress::finish() {
  if (dirty_) out_ << "\n" << std::flush;
  dirty_ = false;
}

}  // namespace dynamoe::train
