#include "dynamoe/bench/ep_bench.h"

#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>

#include "dynamoe/bench/stats.h"
#include "dynamoe/dist/batch_group.h"
#include "dynamoe/dist/launch_env.h"
#include "dynamoe/dist/process_group.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/top_k.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/process.h"

namespace dynamoe::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr int64_t kDim = 512, kHidden = 1024, kExperts = 8, kTopK = 2;

/// Runs `n` workers of `mode`; returns rank 0's result (or an "error" entry).
json run_configuration(const EpBenchOptions& o, const std::string& mode, int n, const std::string& scratch) {
  const int port = free_local_port();
  const int threads = std::max(1, o.threads / n);
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      dist::set_local_launch_environment(r, n, port);
      const std::string log = scratch + "/" + mode + std::to_string(n) + "-rank" + std::to_string(r) + ".log";
      const std::string cmd = "exec '" + o.executable + "' bench --ep-worker " + mode + " --threads " +
                              std::to_string(threads) + " --tokens " + std::to_string(o.tokens) + " --rounds " +
                              std::to_string(o.iterations) + " >'" + log + "' 2>&1";
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : pids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) ++failed;
  }
  const std::string log = read_file(scratch + "/" + mode + std::to_string(n) + "-rank0.log");
  const size_t at = log.find("EP_RESULT ");
  if (failed || at == std::string::npos) return {{"error", last_line(log)}};
  return json::parse(log.substr(at + 10, log.find('\n', at) - at - 10));
}

std::string fmt_ms(double s) { return fmt("%.1f", s * 1e3); }

}  // namespace

int run_ep_worker(const std::string& mode, const EpBenchOptions& o, std::ostream& out) {
  DYNAMOE_CHECK(mode == "dp" || mode == "ep", "bench --ep-worker: mode '", mode, "' is not dp or ep");
  torch::set_num_threads(o.threads);
  const dist::LaunchEnv env = dist::launch_env_from_environment();
  std::shared_ptr<dist::ProcessGroup> g;
  if (env.distributed()) g = dist::ProcessGroup::join(env, {120, 60});
  const int n = g ? g->size() : 1, rank = g ? g->rank() : 0;
  moe::MoELayerOptions lo;
  lo.dim = kDim;
  lo.n_experts = kExperts;
  lo.router = moe::router_choice("top_k");
  lo.router.as_mutable<moe::TopKOptions>().k = kTopK;
  lo.expert = "swiglu";
  lo.expert_options = {kDim, kHidden, "silu"};
  lo.losses.load_balance = 0.01;
  lo.losses.z_loss = 0.001;
  lo.expert_group = mode == "ep" ? g.get() : nullptr;
  torch::manual_seed(0);
  moe::MoELayer layer(lo);
  layer->train();
  std::vector<at::Tensor> replicated;  // gradients every rank holds: summed over ranks each step
  const auto [first, last] = layer->local_experts();
  std::set<const void*> mine;
  for (int64_t i = first; i < last; ++i)
    for (const auto& p : layer->experts()[static_cast<size_t>(i)]->parameters()) mine.insert(p.unsafeGetTensorImpl());
  for (const auto& p : layer->parameters())
    if (mode == "dp" || !mine.count(p.unsafeGetTensorImpl())) replicated.push_back(p);
  torch::manual_seed(1 + rank);
  const at::Tensor x = torch::randn({o.tokens, kDim});
  std::vector<double> step_s, a2a_s, ar_s, a2a_bytes, ar_bytes;
  for (int it = 0; it < o.iterations + 2; ++it) {
    if (g) g->barrier();
    if (g) g->reset_traffic();
    const auto t0 = Clock::now();
    layer->zero_grad();
    moe::MoELayerOutput y;
    {
      dist::BatchScope scope(g.get(), {o.tokens * rank, o.tokens * (rank + 1), o.tokens * n});
      y = layer->forward(x);
    }
    (y.y.square().mean() + y.aux_loss).backward();
    if (g) {
      std::vector<at::Tensor> grads;
      for (auto& p : replicated)
        if (p.grad().defined()) grads.push_back(p.grad());
      g->allreduce_sum_(grads);
    }
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (it < 2) continue;  // warm-up
    step_s.push_back(dt);
    const dist::ProcessGroup::Traffic tr = g ? g->traffic() : dist::ProcessGroup::Traffic();
    a2a_s.push_back(tr.alltoall_s);
    ar_s.push_back(tr.allreduce_s);
    a2a_bytes.push_back(static_cast<double>(tr.alltoall_bytes));
    ar_bytes.push_back(static_cast<double>(tr.allreduce_bytes));
  }
  if (rank == 0) {
    const double step = median(step_s);
    json r = {{"mode", mode},
              {"processes", n},
              {"threads", o.threads},
              {"step_s", step},
              {"tokens_per_s", static_cast<double>(o.tokens * n) / step},
              {"alltoall_s", median(a2a_s)},
              {"allreduce_s", median(ar_s)},
              {"alltoall_bytes", median(a2a_bytes)},
              {"allreduce_bytes", median(ar_bytes)}};
    out << "EP_RESULT " << r.dump() << "\n";
  }
  if (g) g->barrier();
  return 0;
}

void run_ep_bench(const EpBenchOptions& o, std::ostream& out) {
  const std::string scratch = make_temp_dir("dynamoe-bench-ep-");
  out << "\n== ep: one SwiGLU MoE layer training step (T = " << o.tokens << " tokens per rank, D = " << kDim
      << ", F = " << kHidden << ", E = " << kExperts << ", top-" << kTopK << "), processes on loopback sharing "
      << o.threads << " cores; median of " << o.iterations << " steps ==\n";
  out << "processes  mode  threads/proc  step ms  tokens/s   all-to-all  allreduce  sent per rank per step\n";
  std::vector<json> results;
  for (int n : {1, 2, 4})
    for (const std::string mode : {"dp", "ep"}) {
      if (n == 1 && mode == "ep") continue;
      json r = run_configuration(o, mode, n, scratch);
      if (r.contains("error")) {
        out << n << "  " << mode << "  failed: " << r["error"].get<std::string>() << "\n";
        continue;
      }
      results.push_back(r);
      const double step = r["step_s"];
      char line[256];
      std::snprintf(line, sizeof(line), "%9d  %-4s  %12d  %7s  %8.0f  %9.0f%%  %8.0f%%  %s all-to-all + %s allreduce\n",
                    n, n == 1 ? "-" : mode.c_str(), std::max(1, o.threads / n), fmt_ms(step).c_str(),
                    r["tokens_per_s"].get<double>(), 100 * r["alltoall_s"].get<double>() / step,
                    100 * r["allreduce_s"].get<double>() / step,
                    megabytes(static_cast<uintmax_t>(r["alltoall_bytes"].get<double>())).c_str(),
                    megabytes(static_cast<uintmax_t>(r["allreduce_bytes"].get<double>())).c_str());
      out << line;
    }
  // The projection: per-token all-to-all bytes measured at the largest expert-parallel run,
  // scaled to the share of rows that leave a machine, and ring allreduce of the measured bytes.
  const json* ep = nullptr;
  const json* dp = nullptr;
  for (const json& r : results) {
    if (r["mode"] == "ep") ep = &r;
    if (r["mode"] == "dp" && r["processes"].get<int>() > 1) dp = &r;
  }
  if (!ep || !dp) return;
  const int n = (*ep)["processes"];
  const double leaving = static_cast<double>(n - 1) / n;
  const double bytes_per_token = (*ep)["alltoall_bytes"].get<double>() / static_cast<double>(o.tokens) / leaving;
  const double dp_bytes = (*dp)["allreduce_bytes"], ep_ar_bytes = (*ep)["allreduce_bytes"];
  out << "\nprojection (a model, not a measurement): M machines, one process each, T = " << o.tokens
      << " tokens each; all-to-all moves " << fmt("%.0f", bytes_per_token)
      << " bytes per token (measured at " << n << " processes) times (M-1)/M, plus 4 exchanges x 50 us latency;\n"
      << "ring allreduce moves 2 (M-1)/M x the reduced bytes (data parallel: " << megabytes(static_cast<uintmax_t>(dp_bytes))
      << " of expert and gate gradients; expert parallel: " << megabytes(static_cast<uintmax_t>(ep_ar_bytes))
      << " of gate gradients)\n";
  out << "machines  Gbit/s  ep all-to-all ms  ep allreduce ms  dp allreduce ms\n";
  for (int M : {8, 16, 32, 64})
    for (double gbit : {25.0, 100.0}) {
      const double Bps = gbit * 1e9 / 8;
      const double frac = static_cast<double>(M - 1) / M;
      const double a2a = bytes_per_token * static_cast<double>(o.tokens) * frac / Bps + 4 * 50e-6;
      const double ar_ep = 2 * frac * ep_ar_bytes / Bps, ar_dp = 2 * frac * dp_bytes / Bps;
      char line[128];
      std::snprintf(line, sizeof(line), "%8d  %6.0f  %16.2f  %15.3f  %15.2f\n", M, gbit, a2a * 1e3, ar_ep * 1e3,
                    ar_dp * 1e3);
      out << line;
    }
}

}  // namespace dynamoe::bench
