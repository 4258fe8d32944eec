// dynamoe bench: the MoE layer benchmark (protocol: docs/bench.md) and the end-to-end
// training comparison, each side by side with its PyTorch peer.
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "commands.h"
#include "dynamoe/bench/ep_bench.h"
#include "dynamoe/bench/moe_bench.h"
#include "dynamoe/bench/train_bench.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/process.h"

namespace dynamoe::cli {
namespace fs = std::filesystem;
namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// bench/<file> in the working directory, else next to the source tree of this build.
std::string bench_script(const std::string& file) {
  if (fs::exists(fs::path("bench") / file)) return (fs::path("bench") / file).string();
#ifdef DYNAMOE_SOURCE_DIR
  return (fs::path(DYNAMOE_SOURCE_DIR) / "bench" / file).string();
#else
  return (fs::path("bench") / file).string();
#endif
}

int run(const ParsedArgs& a) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (a.has("ep-worker")) {
    bench::EpBenchOptions w;
    w.threads = static_cast<int>(a.get_int("threads", 1, 1));
    w.tokens = a.get_int("tokens", w.tokens, 1);
    w.iterations = static_cast<int>(a.get_int("rounds", w.iterations, 1));
    return bench::run_ep_worker(a.get("ep-worker"), w, std::cout);
  }
  bench::BenchOptions o;
  o.threads = static_cast<int>(a.get_int("threads", hw, 1));
  o.rounds = static_cast<int>(a.get_int("rounds", o.rounds, 1));
  o.warmup = static_cast<int>(a.get_int("warmup", o.warmup, 0));
  o.tokens = a.get_int("tokens", o.tokens, 1);
  o.peers = !a.has("no-peers");
  o.python = a.get("python", o.python);
  o.peers_script = a.get("peers-script", bench_script("peers.py"));
  // A full run takes about 12 minutes: it is asked for by name (--sections all), not by accident.
  if (!a.has("sections"))
    throw UsageError("dynamoe bench: --sections LIST is required: some of main,fine,decode,dynamic,skew,bf16,e2e,ep, "
                     "or all (about 12 minutes); see dynamoe bench --help");
  std::vector<std::string> sections = split(a.get("sections"));
  if (sections == std::vector<std::string>{"all"}) sections = {"main", "fine", "decode", "dynamic", "skew", "bf16", "e2e"};
  o.sections.clear();
  bool e2e = false, ep = false;
  for (const auto& s : sections) {
    if (s == "e2e")
      e2e = true;
    else if (s == "ep")
      ep = true;
    else
      o.sections.push_back(s);
  }
  int failed = o.sections.empty() ? 0 : bench::run_moe_bench(o, std::cout);
  if (ep) {
    bench::EpBenchOptions e;
    e.threads = o.threads;
    e.executable = self_executable();
    if (a.has("tokens")) e.tokens = a.get_int("tokens", e.tokens, 1);
    if (a.has("rounds")) e.iterations = static_cast<int>(a.get_int("rounds", e.iterations, 1));
    bench::run_ep_bench(e, std::cout);
  }
  if (e2e) {
    bench::TrainBenchOptions t;
    t.threads = o.threads;
    t.python = o.python;
    t.peer_script = a.get("train-peer-script", bench_script("train_peer.py"));
    t.config = a.get("config", t.config);
    t.steps = a.get_int("steps", t.steps, 1);
    t.rounds = static_cast<int>(a.get_int("e2e-rounds", t.rounds, 1));
    bench::run_train_bench(t, std::cout);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

Command bench_command() {
  return {{"bench",
           "MoE layer and training speed, side by side with PyTorch peers (bench/peers.py, bench/train_peer.py)",
           "dynamoe bench --sections all|main,fine,decode,dynamic,skew,bf16,e2e,ep [--rounds R] [--threads N] [--no-peers] [options]",
           "Protocol (docs/bench.md): every implementation runs in each round, rounds are\n"
           "interleaved, each round also times a 1024^3 calibration GEMM, and the median over clean\n"
           "rounds (calibration within 0.85 of its best) is quoted with the min in (). Outputs and\n"
           "gradients of dynamoe are checked against the HF loop in the same run; the exit code is 1\n"
           "when a check fails. Timings never fail.",
           {{"sections", "LIST", "comma-separated sections, or all (every one but ep: about 12 minutes)"},
            {"rounds", "R", "timed rounds per case (default 10)"},
            {"warmup", "W", "untimed rounds first (default 3)"},
            {"threads", "N", "intra-op threads for dynamoe and the peers (default: all cores)"},
            {"tokens", "T", "tokens of the main shapes (default 4096)"},
            {"no-peers", "", "dynamoe only (no python)"},
            {"python", "PATH", "python with torch (default /usr/bin/python3)"},
            {"peers-script", "FILE", "the layer peer (default bench/peers.py)"},
            {"train-peer-script", "FILE", "the training peer (default bench/train_peer.py)"},
            {"config", "FILE", "e2e: the model to train (default configs/demo.yaml)"},
            {"steps", "S", "e2e: timed training steps per run (default 300)"},
            {"e2e-rounds", "R", "e2e: alternating runs of each (default 2)"},
            {"ep-worker", "MODE", "internal: one rank of the ep section (dp or ep)"}},
           0},
          run};
}

}  // namespace dynamoe::cli
