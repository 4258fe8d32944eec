#pragma once
// End-to-end training speed: dynamoe's trainer against an equivalent PyTorch script
// (bench/train_peer.py: same model, data, batch and steps), runs alternating.
//   run_train_bench(TrainBenchOptions{}, std::cout);
#include <cstdint>
#include <ostream>
#include <string>

namespace dynamoe::bench {

struct TrainBenchOptions {
  std::string config = "configs/demo.yaml";   ///< the model both sides train
  std::string python = "/usr/bin/python3";
  std::string peer_script = "bench/train_peer.py";
  int threads = 2;
  int64_t steps = 300;   ///< timed steps per run, after `warmup` untimed ones
  int64_t warmup = 20;
  int rounds = 2;        ///< runs of each side, alternating
};

/// Prints samples/s of both sides per run and the ratio of the medians; returns that ratio.
double run_train_bench(const TrainBenchOptions& o, std::ostream& out);

}  // namespace dynamoe::bench
