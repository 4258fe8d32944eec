#pragma once
// The processes of a run, joined over PyTorch's c10d with its Gloo backend (CPU tensors over
// TCP): rendezvous at MASTER_ADDR:MASTER_PORT (a c10d TCPStore served by rank 0), then the
// collectives dynamoe needs. Every rank must issue the same collectives in the same order.
//
// A collective that fails (a peer exited, was killed, or hangs past timeout_s) throws
// PeerLost, one line naming the lost ranks: each rank beats a heartbeat into the store, and
// a failure checks whose heartbeat stopped.
//
//   auto g = dist::ProcessGroup::join(dist::launch_env_from_environment(), {.timeout_s = 120});
//   std::vector<at::Tensor> grads = ...;
//   g->allreduce_sum_(grads);  // in place, coalesced in buckets
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dynamoe/dist/launch_env.h"
#include "dynamoe/util/error.h"

namespace dynamoe::dist {

/// A collective failed because another rank is gone or stuck.
class PeerLost : public Error {
 public:
  explicit PeerLost(const std::string& msg) : Error(msg) {}
};

struct GroupOptions {
  double timeout_s = 120;         ///< a collective waiting longer than this fails (dist.timeout_s)
  double connect_timeout_s = 60;  ///< joining: how long to wait for every rank (dist.connect_timeout_s)
  int64_t bucket_bytes = 25 << 20;  ///< allreduce_sum_ coalesces tensors into buckets of about this size
};

class ProcessGroup {
 public:
  /// Joins the run `env` describes; returns once every rank has joined (or throws).
  static std::shared_ptr<ProcessGroup> join(const LaunchEnv& env, const GroupOptions& opts);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  const GroupOptions& options() const;

  /// Sums each tensor over the ranks, in place. Contiguous tensors of one dtype share a bucket;
  /// buckets are reduced concurrently. Tensors must have the same shapes and dtypes on every rank.
  void allreduce_sum_(std::vector<at::Tensor>& tensors);
  /// Copies rank `root`'s tensors into every other rank's, in place.
  void broadcast_(std::vector<at::Tensor>& tensors, int root = 0);
  /// Rows of `in` ([sum(send_rows), ...], grouped by destination rank) go to their rank; returns
  /// the rows received ([sum(recv_rows), ...], grouped by source rank). Zero rows are fine.
  at::Tensor alltoall(const at::Tensor& in, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows);
  /// Every rank sends send[r] to rank r; returns what each rank sent to this one.
  std::vector<int64_t> alltoall_counts(const std::vector<int64_t>& send);
  /// Returns once every rank has called it.
  void barrier();

  /// What this rank's collectives moved and waited for since the last reset (for benchmarks).
  struct Traffic {
    int64_t alltoalls = 0, allreduces = 0;
    int64_t alltoall_bytes = 0;   ///< bytes this rank sent to other ranks
    int64_t allreduce_bytes = 0;  ///< bytes of the tensors reduced
    double alltoall_s = 0, allreduce_s = 0;
  };
  Traffic traffic() const;
  void reset_traffic();
  /// Rank 0 receives every rank's bytes (its own included), in rank order; the others get {}.
  std::vector<std::string> gather_bytes(const std::string& bytes);
  /// A group of some of this group's ranks (`ranks`, which must hold this one), named `tag`:
  /// every member calls it with the same ranks and tag; its ranks are the positions in `ranks`.
  std::shared_ptr<ProcessGroup> subgroup(const std::vector<int>& ranks, const std::string& tag);

  struct Impl;

 private:
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The group of the whole run when it has more than one process (set by set_world_group), else nullptr.
ProcessGroup* world_group();
void set_world_group(std::shared_ptr<ProcessGroup> group);

/// Expert parallelism (moe.expert_parallel = P of a world of D x P): the P consecutive ranks that
/// split the experts between them, and the D ranks that hold the same experts (nullptr when D = 1).
ProcessGroup* expert_group();
ProcessGroup* expert_data_group();
/// Builds both from the world group (every rank calls it with the same P).
void set_expert_parallel(int P);

}  // namespace dynamoe::dist
