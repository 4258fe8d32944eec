#pragma once
// The multi-process section of the bench (`dynamoe bench --sections ep`): an MoE layer training
// step (forward, backward, gradient allreduce) at 1, 2 and 4 processes on loopback, data
// parallel (every rank all experts, gradients allreduced) and expert parallel (P = processes:
// rows by all-to-all), each rank with its own tokens. Reports tokens/s, the share of the step
// spent in all-to-all and in allreduce, and the bytes each rank sends per step, then projects
// the exchange time for 8-64 machines at 25 and 100 Gbit/s from those measured bytes (a model,
// stated as one).
//   EpBenchOptions o;  run_ep_bench(o, std::cout);
#include <ostream>
#include <string>

namespace dynamoe::bench {

struct EpBenchOptions {
  int threads = 2;          ///< cores to share between the processes of a configuration
  int iterations = 6;       ///< timed steps per configuration (median quoted)
  int64_t tokens = 2048;    ///< tokens per rank per step
  std::string executable;   ///< this dynamoe (its workers are `dynamoe bench --ep-worker MODE`)
};

/// Runs every configuration as child processes and prints the table and the projection.
void run_ep_bench(const EpBenchOptions& o, std::ostream& out);

/// One rank of a configuration (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set): mode "dp" or
/// "ep"; rank 0 prints one line "EP_RESULT <json>". Returns the exit code.
int run_ep_worker(const std::string& mode, const EpBenchOptions& o, std::ostream& out);

}  // namespace dynamoe::bench
