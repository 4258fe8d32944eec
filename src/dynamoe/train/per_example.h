#pragma once
// What an evaluation saw per example (classifier: an image) or per token (language model: a
// predicted position): its loss and the number of active experts in every MoE layer, so that a
// study can ask whether the count follows difficulty (docs/methods.md section 7).
//
//   PerExample rec;
//   train::evaluate(model, ds, 1000, &rec);           // or evaluate_lm(..., &rec)
//   rec.write_csv("runs/x/per_example.csv");          // item, [label, prediction,] loss, active_mean, active_0..
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dynamoe/moe/layer_stats.h"

namespace dynamoe::train {

struct PerExample {
  bool has_labels = false;                   ///< classifier: label and prediction columns
  std::vector<double> loss;                  ///< [items] cross-entropy of each item (nats)
  std::vector<int64_t> label, prediction;    ///< [items] (classifiers)
  std::vector<std::vector<int32_t>> active;  ///< [layers][items] active experts

  int64_t items() const { return static_cast<int64_t>(loss.size()); }
  /// Appends a batch: per-item losses [B], labels and predictions [B] (classifiers; undefined
  /// for a language model), and each MoE layer's LayerStats of the same B items (token_active).
  void add(const at::Tensor& losses, const at::Tensor& labels, const at::Tensor& predictions,
           const std::vector<moe::LayerStats>& stats);
  /// The mean over layers of each item's active experts.
  std::vector<double> active_mean() const;
  /// Writes the CSV atomically: a header, then one row per item.
  void write_csv(const std::string& path) const;
};

}  // namespace dynamoe::train
