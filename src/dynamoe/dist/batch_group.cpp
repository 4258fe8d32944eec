#include "dynamoe/dist/batch_group.h"

#include <ATen/ATen.h>

#include "dynamoe/dist/process_group.h"

namespace dynamoe::dist {
namespace {
thread_local ProcessGroup* current = nullptr;
thread_local BatchRows current_rows;
}  // namespace

ProcessGroup* batch_group() { return current; }

BatchScope::BatchScope(ProcessGroup* group, BatchRows rows) : previous_(current), previous_rows_(current_rows) {
  current = group && group->size() > 1 ? group : nullptr;
  current_rows = rows;
}

BatchScope::~BatchScope() {
  current = previous_;
  current_rows = previous_rows_;
}

at::Tensor batch_draw(int64_t n, const std::function<at::Tensor(int64_t)>& draw) {
  const BatchRows& r = current_rows;
  const int64_t held = r.end - r.begin;
  if (!current || held <= 0 || n % held != 0) return draw(n);
  const int64_t per_row = n / held;  // tokens per example (1 for images)
  return draw(r.total * per_row).narrow(0, r.begin * per_row, n);
}

at::Tensor batch_dropout(const at::Tensor& x, double p, bool train) {
  if (!train || p <= 0) return x;
  const at::Tensor keep = batch_draw(x.size(0), [&](int64_t rows) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = rows;
    return at::empty(shape, x.options().requires_grad(false)).bernoulli_(1 - p);
  });
  return x * keep.div_(1 - p);  // as at::dropout computes it: the same numbers in one process
}

double batch_share() {
  const BatchRows& r = current_rows;
  if (!current || r.total <= 0) return 1.0;
  return static_cast<double>(r.end - r.begin) / static_cast<double>(r.total);
}

void batch_sum_(at::Tensor& t) {
  if (!current) return;
  DYNAMOE_CHECK(!t.requires_grad(), "batch_sum_: a statistic that requires grad cannot be summed over ranks");
  at::Tensor c = t.contiguous();
  std::vector<at::Tensor> one{c};
  current->allreduce_sum_(one);
  if (!c.is_same(t)) t.copy_(c);
}

}  // namespace dynamoe::dist

namespace dynamoe::dist {
namespace {

/// Every rank's row count, in rank order.
std::vector<int64_t> row_counts(int64_t n_local) {
  std::vector<int64_t> send(static_cast<size_t>(current->size()), n_local);
  return current->alltoall_counts(send);
}

}  // namespace

at::Tensor batch_gather_rows(const at::Tensor& t) {
  if (!current) return t;
  DYNAMOE_CHECK(!t.requires_grad(), "batch_gather_rows: routing decisions only (the tensor requires grad)");
  const int P = current->size();
  const std::vector<int64_t> counts = row_counts(t.size(0));
  // Every rank sends its rows to every rank: the all-to-all gives the concatenation.
  std::vector<at::Tensor> copies(static_cast<size_t>(P), t.contiguous());
  const std::vector<int64_t> send(static_cast<size_t>(P), t.size(0));
  return current->alltoall(at::cat(copies, 0), send, counts);
}

int64_t batch_row_offset(int64_t n_local) {
  if (!current) return 0;
  const std::vector<int64_t> counts = row_counts(n_local);
  int64_t offset = 0;
  for (int r = 0; r < current->rank(); ++r) offset += counts[static_cast<size_t>(r)];
  return offset;
}

}  // namespace dynamoe::dist
