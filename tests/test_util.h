#pragma once
// Shared helpers for dynamoe tests: temporary folders, running the CLI, synthetic datasets.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dynamoe/data/idx.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::testutil {

/// A fresh temporary folder, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("dynamoe-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& child) const { return (path_ / child).string(); }
  std::string file(const std::string& child) const { return (path_ / child).string(); }

 private:
  std::filesystem::path path_;
};

/// Sets an environment variable for the scope, restoring (or unsetting) it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// The result of a shell command.
struct CommandResult {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr together
};

/// Runs `cmd` through /bin/sh, capturing stdout and stderr.
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// Runs fn and expects a one-line dynamoe::Error whose message contains every one of `parts`.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected dynamoe::Error, nothing was thrown";
  } catch (const dynamoe::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "error is not one line: " << msg;
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

/// The message of the ConfigError thrown by f (fails the test when none is thrown).
template <typename F>
std::string config_error(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError thrown";
  return "";
}

/// Path of the built CLI.
inline std::string cli() { return DYNAMOE_CLI; }
/// Path of the source tree.
inline std::string source_dir() { return DYNAMOE_SOURCE_DIR; }

/// Writes a learnable synthetic image dataset in the 4 standard IDX files under `dir`:
/// each class has a random prototype image; examples are the prototype plus noise (of standard
/// deviation `noise_sd`: the default makes the classes easy to tell apart).
inline void write_synthetic_idx(const std::string& dir, int64_t n_train, int64_t n_test, int64_t side = 8,
                                int classes = 10, uint32_t seed = 7, double noise_sd = 40.0) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pix(0, 255);
  std::normal_distribution<double> noise(0.0, noise_sd);
  std::vector<std::vector<int>> proto(classes, std::vector<int>(side * side));
  for (auto& p : proto)
    for (auto& v : p) v = pix(rng);
  auto make = [&](int64_t n, const std::string& images, const std::string& labels) {
    data::IdxArray im, lb;
    im.dims = {n, side, side};
    lb.dims = {n};
    for (int64_t i = 0; i < n; ++i) {
      const int c = static_cast<int>(i % classes);
      lb.data.push_back(static_cast<uint8_t>(c));
      for (int v : proto[c]) im.data.push_back(static_cast<uint8_t>(std::clamp(v + noise(rng), 0.0, 255.0)));
    }
    data::write_idx(dir + "/" + images, im);
    data::write_idx(dir + "/" + labels, lb);
  };
  make(n_train, "train-images-idx3-ubyte", "train-labels-idx1-ubyte");
  make(n_test, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
}

/// Checks that every row of a run's metrics.jsonl carries the fields common to every task:
/// train rows step, epoch, split, loss, lr, grad_norm (a number), <unit>_per_s, elapsed_s;
/// eval rows step, epoch, split, loss, elapsed_s. Returns the number of train rows.
inline int expect_common_row_fields(const std::string& run_dir, const std::string& unit) {
  int train_rows = 0;
  std::string text = dynamoe::read_file(run_dir + "/metrics.jsonl");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const auto row = nlohmann::json::parse(line);
    const std::string split = row.at("split").get<std::string>();
    if (split == "train") {
      ++train_rows;
      for (const char* k : {"step", "epoch", "loss", "lr", "grad_norm", "elapsed_s"})
        EXPECT_TRUE(row.contains(k) && row[k].is_number()) << run_dir << ": train row without a numeric " << k << ": " << line;
      EXPECT_TRUE(row.contains(unit + "_per_s")) << run_dir << ": " << line;
    } else if (split != "gradnoise" && split != "base") {
      for (const char* k : {"step", "epoch", "loss", "elapsed_s"})
        EXPECT_TRUE(row.contains(k) && row[k].is_number()) << run_dir << ": eval row without a numeric " << k << ": " << line;
    }
  }
  return train_rows;
}

/// The weights of a run's newest checkpoint.
inline io::SafetensorsFile final_weights(const std::string& run_dir) {
  return io::load_safetensors(io::latest_checkpoint(run_dir + "/checkpoints") + "/model.safetensors");
}

/// Largest relative difference ||a - b|| / ||a|| over the tensors of two checkpoints (which must
/// hold the same names); `worst` names the tensor.
inline double max_relative_difference(const io::SafetensorsFile& a, const io::SafetensorsFile& b, std::string* worst) {
  EXPECT_EQ(a.names.size(), b.names.size());
  double out = 0;
  for (const auto& [name, t] : a.tensors) {
    const at::Tensor x = t.to(at::kDouble), y = b.at(name).to(at::kDouble);
    const double scale = std::max(x.norm().item<double>(), 1e-12);
    const double d = (x - y).norm().item<double>() / scale;
    if (d > out) {
      out = d;
      *worst = name;
    }
  }
  return out;
}

/// `command` (starting with cli() + " train") run as `nproc` processes by dynamoe launch.
inline std::string launched(int nproc, const std::string& command) {
  const std::string train = cli() + " train";
  EXPECT_EQ(command.rfind(train, 0), 0u) << command;
  return cli() + " launch --nproc " + std::to_string(nproc) + " -- train" + command.substr(train.size());
}

}  // namespace dynamoe::testutil
