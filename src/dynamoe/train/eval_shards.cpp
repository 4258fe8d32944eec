#include "dynamoe/train/eval_shards.h"

#include <torch/torch.h>

#include <cmath>

#include "dynamoe/dist/process_group.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
namespace {

/// Every number of the accumulators, in a fixed order (the same on every rank).
std::vector<double*> accumulator_fields(moe::LayerStatsAccumulator& a, std::vector<double>& ints) {
  ints = {static_cast<double>(a.tokens), static_cast<double>(a.dropped), static_cast<double>(a.assignments)};
  for (int64_t v : a.active_hist) ints.push_back(static_cast<double>(v));
  for (int64_t v : a.expert_tokens) ints.push_back(static_cast<double>(v));
  std::vector<double*> f = {&a.active_sum, &a.entropy_sum, &a.tsallis_sum, &a.flops, &a.drop_rate_sum};
  for (auto& [name, v] : a.loss_sums) f.push_back(&v);
  return f;
}

}  // namespace

void sum_moe_stats(dist::ProcessGroup& g, std::vector<moe::LayerStatsAccumulator>& acc) {
  std::vector<double> flat;
  std::vector<std::vector<double>> ints(acc.size());
  std::vector<std::vector<double*>> fields(acc.size());
  for (size_t l = 0; l < acc.size(); ++l) {
    fields[l] = accumulator_fields(acc[l], ints[l]);
    flat.insert(flat.end(), ints[l].begin(), ints[l].end());
    for (double* p : fields[l]) flat.push_back(*p);
  }
  std::vector<at::Tensor> t{torch::tensor(flat, torch::kFloat64)};
  g.allreduce_sum_(t);
  const double* v = t[0].data_ptr<double>();
  const double per_batch = 1.0 / g.size();
  for (size_t l = 0; l < acc.size(); ++l) {
    moe::LayerStatsAccumulator& a = acc[l];
    a.tokens = std::llround(*v++);
    a.dropped = std::llround(*v++);
    a.assignments = std::llround(*v++);
    for (auto& x : a.active_hist) x = std::llround(*v++);
    for (auto& x : a.expert_tokens) x = std::llround(*v++);
    for (size_t i = 0; i < fields[l].size(); ++i) *fields[l][i] = *v++;
    a.drop_rate_sum *= per_batch;
    for (auto& [name, x] : a.loss_sums) x *= per_batch;
  }
}

EvalShards::EvalShards() : group_(dist::world_group()) {
  if (group_ && group_->size() == 1) group_ = nullptr;
}

int EvalShards::ranks() const { return group_ ? group_->size() : 1; }

std::vector<std::pair<int64_t, int64_t>> EvalShards::batches(int64_t n, int64_t batch) const {
  DYNAMOE_CHECK(batch > 0, "evaluation: batch size ", batch, " is not positive");
  std::vector<std::pair<int64_t, int64_t>> out;
  if (n == 0 && ranks() == 1) return out;
  DYNAMOE_CHECK(n >= ranks(), "evaluation: ", n, " examples (or windows) are fewer than the ", ranks(),
                " processes, each of which needs at least one");
  for (int64_t i = 0; i < n; i += batch) out.emplace_back(i, std::min(n, i + batch));
  if (out.size() > 1 && out.back().second - out.back().first < ranks()) {
    out[out.size() - 2].second = n;
    out.pop_back();
  }
  return out;
}

std::pair<int64_t, int64_t> EvalShards::rows(int64_t begin, int64_t end) const {
  if (!group_) return {begin, end};
  const int64_t n = end - begin, r = group_->rank(), s = group_->size();
  return {begin + n * r / s, begin + n * (r + 1) / s};
}

std::unique_ptr<dist::BatchScope> EvalShards::scope(int64_t begin, int64_t end) const {
  if (!group_) return nullptr;
  const auto [lo, hi] = rows(begin, end);
  return std::make_unique<dist::BatchScope>(group_, dist::BatchRows{lo - begin, hi - begin, end - begin});
}

void EvalShards::sum(std::vector<double>& values) const {
  if (!group_ || values.empty()) return;
  std::vector<at::Tensor> t{torch::tensor(values, torch::kFloat64)};
  group_->allreduce_sum_(t);
  const double* v = t[0].data_ptr<double>();
  for (double& x : values) x = *v++;
}

void EvalShards::sum(std::vector<moe::LayerStatsAccumulator>& acc) const {
  if (group_) sum_moe_stats(*group_, acc);
}

}  // namespace dynamoe::train
