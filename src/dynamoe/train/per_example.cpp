#include "dynamoe/train/per_example.h"

#include <ATen/ATen.h>

#include <cstdio>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {

void PerExample::add(const at::Tensor& losses, const at::Tensor& labels, const at::Tensor& predictions,
                     const std::vector<moe::LayerStats>& stats) {
  const at::Tensor l = losses.detach().to(at::kDouble).contiguous().reshape({-1});
  const int64_t n = l.numel(), before = items();
  DYNAMOE_CHECK(before == 0 || active.size() == stats.size(), "per-example record: the model has ", stats.size(),
                " MoE layers in this batch and ", active.size(), " before");
  for (size_t k = 0; k < stats.size(); ++k)  // checked before anything is appended
    DYNAMOE_CHECK(static_cast<int64_t>(stats[k].token_active.size()) == n, "per-example record: MoE layer ", k,
                  " routed ", stats[k].token_active.size(), " tokens for ", n, " items");
  has_labels = labels.defined();
  loss.insert(loss.end(), l.data_ptr<double>(), l.data_ptr<double>() + n);
  if (has_labels) {
    const at::Tensor y = labels.to(at::kLong).contiguous(), p = predictions.to(at::kLong).contiguous();
    label.insert(label.end(), y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + n);
    prediction.insert(prediction.end(), p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + n);
  }
  active.resize(stats.size());
  for (size_t k = 0; k < stats.size(); ++k) {
    const auto& t = stats[k].token_active;
    active[k].insert(active[k].end(), t.begin(), t.end());
  }
}

std::vector<double> PerExample::active_mean() const {
  std::vector<double> m(loss.size(), 0.0);
  if (active.empty()) return m;
  for (const auto& layer : active)
    for (size_t i = 0; i < layer.size() && i < m.size(); ++i) m[i] += layer[i];
  for (double& v : m) v /= static_cast<double>(active.size());
  return m;
}

void PerExample::write_csv(const std::string& path) const {
  std::string out = has_labels ? "item,label,prediction,loss,active_mean" : "item,loss,active_mean";
  for (size_t k = 0; k < active.size(); ++k) out += ",active_" + std::to_string(k);
  out += "\n";
  const std::vector<double> mean = active_mean();
  char buf[64];
  for (int64_t i = 0; i < items(); ++i) {
    out += std::to_string(i);
    if (has_labels) out += "," + std::to_string(label[i]) + "," + std::to_string(prediction[i]);
    std::snprintf(buf, sizeof(buf), ",%.6g,%.4g", loss[i], mean[i]);
    out += buf;
    for (const auto& layer : active) out += "," + std::to_string(layer[i]);
    out += "\n";
  }
  write_file_atomic(path, out);
}

}  // namespace dynamoe::train
