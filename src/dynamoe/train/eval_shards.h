#pragma once
// Evaluation split over the processes of a distributed run (dist::world_group()): every global
// evaluation batch is cut into disjoint row ranges, one per rank, inside a dist::BatchScope (so
// capacity and routing statistics count the whole batch, as in one process), and the sums are
// added over the ranks afterwards. With expert parallelism every rank must run the same number
// of forward passes: the batches are the same on every rank, and none is split into fewer rows
// than there are ranks. Alone (one process) it is the plain batched loop.
//   EvalShards shards;
//   for (auto [b, e] : shards.batches(n, 1000)) {
//     auto [lo, hi] = shards.rows(b, e);
//     dist::BatchScope scope = shards.scope(b, e); ... forward rows [lo, hi) ...
//   }
//   shards.sum(sums); shards.sum(moe);
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "dynamoe/dist/batch_group.h"
#include "dynamoe/moe/layer_stats.h"

namespace dynamoe::dist {
class ProcessGroup;
}

namespace dynamoe::train {

class EvalShards {
 public:
  /// The processes of the current run (dist::world_group()), or this one alone.
  EvalShards();
  int ranks() const;
  /// The global batches over n items of at most `batch` each; a tail smaller than ranks()
  /// joins the batch before it. An error when n < ranks() (a rank would have nothing).
  std::vector<std::pair<int64_t, int64_t>> batches(int64_t n, int64_t batch) const;
  /// This process's items [lo, hi) of the global batch [begin, end).
  std::pair<int64_t, int64_t> rows(int64_t begin, int64_t end) const;
  /// The scope to hold around the forward pass of the global batch [begin, end).
  std::unique_ptr<dist::BatchScope> scope(int64_t begin, int64_t end) const;
  /// Sums over the processes, in place (nothing alone).
  void sum(std::vector<double>& values) const;
  /// Adds the ranks' MoE figures: counts and token-weighted sums add up; per-batch means (drop
  /// rate, losses) are averaged over the ranks.
  void sum(std::vector<moe::LayerStatsAccumulator>& acc) const;

 private:
  dist::ProcessGroup* group_;
};

/// The same as EvalShards::sum over a given group (the training loop's logging window).
void sum_moe_stats(dist::ProcessGroup& g, std::vector<moe::LayerStatsAccumulator>& acc);

}  // namespace dynamoe::train
