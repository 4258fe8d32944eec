#pragma once
// The processes that share the current training batch. In data-parallel training each rank
// holds a disjoint part of every global batch; a routing statistic that enters the math (the
// load-balance f_i, the loads of bias balancing) must then be counted over the whole batch, so
// that the run equals one process on the concatenated batch. The training loop opens a
// BatchScope around each forward pass; outside one (evaluation, generation, tests, one
// process) batch_sum_ does nothing.
// Random draws made per token (router noise, random routing) are made for the whole batch and
// sliced (batch_draw), so that they too equal one process's.
//   { dist::BatchScope scope(dist::world_group(), {64, 128, 128}); loss = model->forward(x_shard); }
//   at::Tensor counts = mask.sum(0);  dist::batch_sum_(counts);  // global counts
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace dynamoe::dist {

class ProcessGroup;

/// The group sharing the current batch on this thread, or nullptr (this process alone).
ProcessGroup* batch_group();

/// The rows of the global batch this process holds: [begin, end) of `total`.
struct BatchRows {
  int64_t begin = 0, end = 0, total = 0;
};

/// Sets batch_group() and the rows this process holds for this thread until destroyed
/// (nullptr or a 1-process group: alone).
class BatchScope {
 public:
  BatchScope(ProcessGroup* group, BatchRows rows);
  ~BatchScope();
  BatchScope(const BatchScope&) = delete;
  BatchScope& operator=(const BatchScope&) = delete;

 private:
  ProcessGroup* previous_;
  BatchRows previous_rows_;
};

/// Inverted dropout of x [rows, ...] (at::dropout's numbers in one process) whose mask is drawn
/// for the whole batch by batch_draw, so that data-parallel training drops what one process
/// would. x itself when !train or p <= 0.
at::Tensor batch_dropout(const at::Tensor& x, double p, bool train);

/// The fraction of the global batch's rows this process holds (1 alone). The training loop
/// weights each rank's loss by it, so a batch mean's local part is its local sum over
/// (global count x share).
double batch_share();

/// Sums `t` over batch_group() in place (nothing when alone). A statistic, not differentiable:
/// `t` must not require grad. Every rank of the group must call it in the same order.
void batch_sum_(at::Tensor& t);

/// The rows of every process of batch_group() concatenated in rank order ([N_global, ...]),
/// which is the batch one process would hold; `t` alone when there is no group. Not
/// differentiable (for routing decisions).
at::Tensor batch_gather_rows(const at::Tensor& t);
/// Where this process's rows start in batch_gather_rows' result (0 alone).
int64_t batch_row_offset(int64_t n_local);

/// Random values for this process's `n` rows (tokens) that equal the rows one process would
/// draw for the whole batch: `draw(rows)` is called for the global row count and this
/// process's slice is returned. Alone, or when n is not a whole number of rows per example,
/// it is draw(n).
at::Tensor batch_draw(int64_t n, const std::function<at::Tensor(int64_t)>& draw);

}  // namespace dynamoe::dist
