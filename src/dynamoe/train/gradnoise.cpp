#include "dynamoe/train/gradnoise.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "dynamoe/io/checkpoint.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {

std::string layer_of(const std::string& name) {
  std::string prefix;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    std::string part = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    prefix += (prefix.empty() ? "" : ".") + part;
    if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) return prefix;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return name.substr(0, name.find('.'));
}

std::vector<GradNoiseLayer> gradient_noise(models::ClassifierImpl& model, const data::TensorDataset& train,
                                           int64_t batch_size, int64_t n_batches, uint64_t seed) {
  DYNAMOE_CHECK(n_batches >= 2, "gradient noise needs at least 2 mini-batches, got ", n_batches);
  DYNAMOE_CHECK(batch_size >= 1 && batch_size <= train.size(), "gradient noise: batch size ", batch_size,
                " must be in [1, ", train.size(), "]");
  const std::string rng = io::cpu_rng_state();
  const bool was_training = model.is_training();
  model.train();
  auto named = model.named_parameters();
  std::vector<at::Tensor> sum, sumsq;
  for (const auto& p : named) {
    sum.push_back(torch::zeros(p.value().sizes(), torch::kDouble));
    sumsq.push_back(torch::zeros(p.value().sizes(), torch::kDouble));
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (int64_t m = 0; m < n_batches; ++m) {
    at::Tensor idx = torch::randperm(train.size(), gen, torch::TensorOptions().dtype(torch::kLong)).slice(0, 0, batch_size);
    models::ModelOutput out = model.forward(train.images.index_select(0, idx));
    at::Tensor loss = torch::nn::functional::cross_entropy(out.logits, train.labels.index_select(0, idx));
    if (out.aux_loss.defined()) loss = loss + out.aux_loss;
    std::vector<at::Tensor> params;
    for (const auto& p : named) params.push_back(p.value());
    auto grads = torch::autograd::grad({loss}, params, {}, false, false, /*allow_unused=*/true);
    torch::NoGradGuard ng;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;
      at::Tensor g = grads[i].to(torch::kDouble);
      sum[i] += g;
      sumsq[i] += g * g;
    }
  }
  model.train(was_training);
  io::set_cpu_rng_state(rng, "gradient noise");

  std::map<std::string, GradNoiseLayer> by_layer;
  std::vector<std::string> order;
  const double M = static_cast<double>(n_batches);
  for (size_t i = 0; i < named.size(); ++i) {
    const std::string layer = layer_of(named[i].key());
    if (!by_layer.count(layer)) order.push_back(layer), by_layer[layer].layer = layer;
    GradNoiseLayer& L = by_layer[layer];
    at::Tensor mean = sum[i] / M;
    at::Tensor var = (sumsq[i] - M * mean * mean) / (M - 1);  // unbiased variance over the M batches
    L.parameters += named[i].value().numel();
    L.trace_var += var.clamp_min(0).sum().item<double>();
    L.mean_grad_sq += (mean * mean).sum().item<double>();
  }
  std::vector<GradNoiseLayer> out;
  for (const auto& name : order) {
    GradNoiseLayer L = by_layer[name];
    L.ratio = L.mean_grad_sq > 0 ? L.trace_var / L.mean_grad_sq : 0;
    out.push_back(L);
  }
  return out;
}

}  // namespace dynamoe::train
