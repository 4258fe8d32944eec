#include "dynamoe/train/evaluate.h"

#include <torch/torch.h>

#include "dynamoe/train/moe_report.h"

namespace dynamoe::train {

EvalResult evaluate(models::ClassifierImpl& model, const data::TensorDataset& ds, int64_t batch_size) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t correct = 0;
  EvalResult r;
  const int64_t n = ds.size();
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t j = std::min(n, i + batch_size);
    at::Tensor x = ds.images.slice(0, i, j), y = ds.labels.slice(0, i, j);
    models::ModelOutput out = model.forward(x);
    accumulate(r.moe, out.moe_stats);
    const at::Tensor& logits = out.logits;  // [B, K]
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  model.train(was_training);
  r.examples = n;
  r.loss = n ? loss_sum / n : 0;
  r.accuracy = n ? static_cast<double>(correct) / n : 0;
  return r;
}

}  // namespace dynamoe::train
