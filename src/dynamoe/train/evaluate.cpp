#include "dynamoe/train/evaluate.h"

#include <torch/torch.h>

#include "dynamoe/train/eval_shards.h"
#include "dynamoe/train/moe_report.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {

EvalResult evaluate(models::ClassifierImpl& model, const data::TensorDataset& ds, int64_t batch_size,
                    PerExample* record) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  EvalResult r;
  const int64_t n = ds.size();
  // Split over the processes of a distributed run: each its rows of every batch.
  const EvalShards shards;
  DYNAMOE_CHECK(!record || shards.ranks() == 1, "evaluation: a per-example record is written by one process, not ",
                shards.ranks());
  std::vector<double> sums = {0, 0};  // summed loss, correct predictions
  for (const auto& [i, j] : shards.batches(n, batch_size)) {
    const auto [lo, hi] = shards.rows(i, j);
    at::Tensor x = ds.images.slice(0, lo, hi), y = ds.labels.slice(0, lo, hi);
    models::ModelOutput out;
    {
      const auto scope = shards.scope(i, j);
      out = model.forward(x);
    }
    accumulate(r.moe, out.moe_stats);
    const at::Tensor& logits = out.logits;  // [B, K]
    const at::Tensor losses = torch::nn::functional::cross_entropy(
        logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));  // [B]
    const at::Tensor pred = logits.argmax(1);
    sums[0] += losses.sum().item<double>();
    sums[1] += static_cast<double>(pred.eq(y).sum().item<int64_t>());
    if (record) record->add(losses, y, pred, out.moe_stats);
  }
  shards.sum(sums);
  shards.sum(r.moe);
  model.train(was_training);
  r.examples = n;
  r.loss = n ? sums[0] / n : 0;
  r.accuracy = n ? sums[1] / n : 0;
  return r;
}

}  // namespace dynamoe::train
