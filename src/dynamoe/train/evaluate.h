#pragma once
// Evaluation of a classifier on a dataset: mean cross-entropy and accuracy.
#include <cstdint>
#include <vector>

#include "dynamoe/data/dataset.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/train/per_example.h"

namespace dynamoe::train {

struct EvalResult {
  double loss = 0;      ///< mean cross-entropy
  double accuracy = 0;  ///< fraction correct
  int64_t examples = 0;
  std::vector<moe::LayerStatsAccumulator> moe;  ///< per MoE layer, over the whole dataset
};

/// Runs the model in eval mode (no gradients) over the whole dataset in batches; restores the
/// model's previous train/eval mode. With `record`, also each example's loss, label,
/// prediction and active experts per MoE layer (one process only).
EvalResult evaluate(models::ClassifierImpl& model, const data::TensorDataset& ds, int64_t batch_size = 1000,
                    PerExample* record = nullptr);

}  // namespace dynamoe::train
