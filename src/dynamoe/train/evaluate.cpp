#include "dynamoe/train/evaluate.h"

#include <torch/torch.h>

#include "dynamoe/train/eval_shards.h"
#include "dynamoe/train/moe_report.h"

namespace dynamoe::train {

EvalResult evaluate(models::ClassifierImpl& model, const data::TensorDataset& ds, int64_t batch_size) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  EvalResult r;
  const int64_t n = ds.size();
  // Split over the processes of a distributed run: each its rows of every batch.
  const EvalShards shards;
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
    sums[0] += torch::nn::functional::cross_entropy(
                   logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                   .item<double>();
    sums[1] += static_cast<double>(logits.argmax(1).eq(y).sum().item<int64_t>());
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
