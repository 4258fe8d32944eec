// Dense models: shapes, state_dict names, registry errors, learning-rate schedule values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dynamoe/config/config.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/train/lr_schedule.h"
#include "dynamoe/util/error.h"

using namespace dynamoe;

namespace {
std::vector<std::string> names_of(const models::Classifier& m) {
  std::vector<std::string> n;
  for (const auto& kv : io::state_dict(*m)) n.push_back(kv.first);
  return n;
}
}  // namespace

TEST(Models, MLPShapesAndNames) {
  config::Config c = config::parse_config("", "t", {"model.hidden=[32, 16]"});
  models::InputSpec spec;
  auto m = models::build_model(c, spec);
  at::Tensor x = torch::randint(0, 256, {5, 1, 28, 28}, torch::kByte);
  EXPECT_EQ(m->forward(x).logits.sizes(), (std::vector<int64_t>{5, 10}));
  EXPECT_EQ(names_of(m), (std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                                   "layers.1.bias", "head.weight", "head.bias", "input_mean",
                                                   "input_std"}));
  EXPECT_EQ(m->num_parameters(), 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10);
}

TEST(Models, CNNShapesWithEveryNorm) {
  for (std::string norm : {"none", "batchnorm", "layernorm"}) {
    config::Config c = config::parse_config("", "t", {"model.kind=cnn", "model.channels=[4, 8]", "model.norm=" + norm});
    models::InputSpec spec{3, 32, 32, 10, {0.5, 0.5, 0.5}, {0.25, 0.25, 0.25}};
    auto m = models::build_model(c, spec);
    at::Tensor x = torch::rand({3, 3, 32, 32});
    at::Tensor y = m->forward(x).logits;
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 10})) << norm;
    y.sum().backward();
    for (const auto& p : m->parameters()) EXPECT_TRUE(p.grad().defined()) << norm;
  }
}

TEST(Models, WrongInputShapeIsAClearError) {
  config::Config c = config::parse_config("", "t");
  auto m = models::build_model(c, models::InputSpec{});
  try {
    m->forward(torch::zeros({2, 1, 32, 32}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected [N, 1, 28, 28]"), std::string::npos) << e.what();
  }
}

TEST(Models, UnknownKindListsValidNames) {
  config::Config c = config::parse_config("", "t");
  c.model.kind = "transformer";
  try {
    models::build_model(c, models::InputSpec{});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("valid: cnn, mlp"), std::string::npos) << e.what();
  }
}

TEST(Models, NormalisationUsesSpecBuffers) {
  config::Config c = config::parse_config("", "t", {"model.hidden=[4]", "model.dropout=0"});
  models::InputSpec spec;
  spec.mean = {0.25};
  spec.std = {0.5};
  auto m = models::build_model(c, spec);
  m->eval();
  at::Tensor u8 = torch::randint(0, 256, {2, 1, 28, 28}, torch::kByte);
  // uint8 pixels and the same pixels as floats in [0, 1] give the same logits.
  EXPECT_TRUE(torch::allclose(m->forward(u8).logits, m->forward(u8.to(torch::kFloat) / 255.0).logits));
}

TEST(LrSchedule, WarmupThenCosineToFloor) {
  config::TrainConfig t;
  t.lr = 1.0;
  t.warmup_steps = 10;
  t.min_lr_ratio = 0.1;
  t.lr_schedule = "cosine";
  EXPECT_DOUBLE_EQ(train::lr_at(t, 0, 110), 0.1);
  EXPECT_DOUBLE_EQ(train::lr_at(t, 9, 110), 1.0);
  EXPECT_DOUBLE_EQ(train::lr_at(t, 10, 110), 1.0);
  EXPECT_NEAR(train::lr_at(t, 59, 110), 0.1 + 0.45 * (1 + std::cos(M_PI * 49 / 99)), 1e-12);
  EXPECT_DOUBLE_EQ(train::lr_at(t, 109, 110), 0.1);
  t.lr_schedule = "constant";
  t.min_lr_ratio = 0;
  EXPECT_DOUBLE_EQ(train::lr_at(t, 50, 110), 1.0);
  EXPECT_DOUBLE_EQ(train::lr_at(t, 4, 110), 0.5);
}

TEST(Models, MoEModelsFollowTheScheduleAndTrainEndToEnd) {
  for (std::string kind : {"moe_mlp", "moe_cnn"}) {
    config::Config c = config::parse_config(
        "", "t", {"model.kind=" + kind, "model.d_model=16", "model.moe_layers=3", "model.channels=[4]",
                  "moe.layers.schedule=descending", "moe.layers.e_min=2", "moe.layers.e_max=6", "moe.experts.hidden=8", "moe.router.kind=top_p",
                  "moe.gate.residual=true", "moe.bias_balancing=true"});
    models::InputSpec spec;
    auto m = models::build_model(c, spec);
    auto out = m->forward(torch::randint(0, 256, {5, 1, 28, 28}, torch::kByte));
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{5, 10})) << kind;
    ASSERT_EQ(out.moe_stats.size(), 3u) << kind;
    std::vector<int64_t> experts;
    for (const auto& s : out.moe_stats) experts.push_back(s.n_experts);
    EXPECT_EQ(experts, (std::vector<int64_t>{6, 4, 2})) << kind;
    (out.logits.sum() + out.aux_loss).backward();
    auto p = m->named_parameters();
    EXPECT_TRUE(p["stack.moe.1.w_map"].grad().defined()) << kind;  // the gating residual is wired in
    EXPECT_EQ(p["stack.moe.1.w_map"].sizes(), (std::vector<int64_t>{4, 6}));
    EXPECT_EQ(m->named_buffers()["stack.moe.0.expert_bias"].numel(), 6);
  }
}
