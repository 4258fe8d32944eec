// Gradient noise: layer grouping, and the figures against a direct computation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dynamoe/config/config.h"
#include <ATen/CPUGeneratorImpl.h>

#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/train/gradnoise.h"

using namespace dynamoe;

TEST(GradNoise, LayerOfParameterNames) {
  EXPECT_EQ(train::layer_of("stack.moe.2.experts.3.w1"), "stack.moe.2");
  EXPECT_EQ(train::layer_of("layers.0.weight"), "layers.0");
  EXPECT_EQ(train::layer_of("head.weight"), "head");
  EXPECT_EQ(train::layer_of("in_proj.bias"), "in_proj");
}

TEST(GradNoise, MatchesDirectComputationAndKeepsRngState) {
  torch::manual_seed(0);
  config::Config c = config::parse_config("", "t", {"model.hidden=[8]", "model.dropout=0"});
  models::InputSpec spec{1, 4, 4, 3, {0.5}, {0.25}};
  models::Classifier m = models::build_model(c, spec);
  data::TensorDataset ds{torch::randint(0, 256, {40, 1, 4, 4}, torch::kByte), torch::randint(0, 3, {40}, torch::kLong)};
  const std::string rng_before = io::cpu_rng_state();
  auto layers = train::gradient_noise(*m, ds, 10, 5, /*seed=*/42);
  EXPECT_EQ(io::cpu_rng_state(), rng_before);
  ASSERT_EQ(layers.size(), 2u);  // layers.0, head
  // Direct: the same 5 mini-batches, gradients stacked, unbiased variance over batches.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(42);
  std::vector<std::vector<at::Tensor>> g;  // [batch][param]
  for (int m_i = 0; m_i < 5; ++m_i) {
    at::Tensor idx = torch::randperm(40, gen, torch::TensorOptions().dtype(torch::kLong)).slice(0, 0, 10);
    for (auto& p : m->parameters()) p.mutable_grad() = at::Tensor();
    torch::nn::functional::cross_entropy(m->forward(ds.images.index_select(0, idx)).logits, ds.labels.index_select(0, idx))
        .backward();
    std::vector<at::Tensor> row;
    for (auto& p : m->parameters()) row.push_back(p.grad().to(torch::kDouble).clone());
    g.push_back(row);
  }
  auto names = m->named_parameters();
  for (const auto& L : layers) {
    double tr = 0, msq = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      if (train::layer_of(names[i].key()) != L.layer) continue;
      std::vector<at::Tensor> col;
      for (auto& row : g) col.push_back(row[i]);
      at::Tensor s = torch::stack(col);  // [5, ...]
      tr += s.var(0, /*unbiased=*/true).sum().item<double>();
      msq += s.mean(0).square().sum().item<double>();
    }
    EXPECT_NEAR(L.trace_var, tr, 1e-9 * std::max(1.0, tr)) << L.layer;
    EXPECT_NEAR(L.mean_grad_sq, msq, 1e-9 * std::max(1.0, msq)) << L.layer;
    EXPECT_NEAR(L.ratio, tr / msq, 1e-6 * tr / msq) << L.layer;
    EXPECT_GT(L.trace_var, 0);
  }
}
