#pragma once
// The MoE layer benchmark (protocol: docs/bench.md): dynamoe's layer against the PyTorch
// peers of bench/peers.py (dense SwiGLU, HF loop, sort/gather grouped, padded bmm), measured
// side by side in one run, rounds interleaved, with a calibration GEMM each round.
//   BenchOptions o;  o.sections = {"main", "decode"};
//   run_moe_bench(o, std::cout);   // prints the tables
#include <ostream>
#include <string>
#include <vector>

namespace dynamoe::bench {

struct BenchOptions {
  int threads = 2;                  ///< intra-op threads for dynamoe and the peers
  int rounds = 10;                  ///< timed rounds per case (each interleaves every implementation)
  int warmup = 3;                   ///< untimed rounds first
  /// main (T=4096 D=512 F=1024/2048 E=8 k=2), fine (E=32 k=4, E=64 k=8), decode (T=1, 32),
  /// dynamic (top_p / dynamoe vs top_k), skew (imbalanced routing), bf16
  std::vector<std::string> sections = {"main", "fine", "decode", "dynamic", "skew", "bf16"};
  bool peers = true;                ///< run the PyTorch peers (needs python)
  std::string python = "/usr/bin/python3";
  std::string peers_script;         ///< bench/peers.py (default: next to the source tree)
  std::string scratch_dir;          ///< where the exchange files go (default: a temp folder)
  int64_t tokens = 4096;            ///< T of the main shapes (smaller for a quick look)
};

/// Runs the sections and prints one table per section to `out`; returns the number of
/// correctness checks that failed (0 when all matched the HF loop).
int run_moe_bench(const BenchOptions& o, std::ostream& out);

}  // namespace dynamoe::bench
