// LoRA adapters on a frozen Hugging Face decoder (src/dynamoe/adapters): the formula, double
// precision gradients, a fine-tuning run that leaves every base tensor bitwise unchanged,
// adapter files that reload to the same outputs, merging, and one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "dynamoe/adapters/adapter_file.h"
#include "dynamoe/adapters/lora.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/models/hf/hf_checkpoint.h"
#include "dynamoe/util/atomic_file.h"
#include "gradcheck.h"
#include "test_util.h"
#include "tiny_llama.h"

using namespace dynamoe;
using namespace dynamoe::adapters;
using namespace dynamoe::models::hf;
namespace fs = std::filesystem;

namespace {

const char* const kConfig = testutil::kTinyLlamaConfig;

/// A base checkpoint folder (config.json + model.safetensors) of a random tiny model.
void write_base(const std::string& dir, uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM lm(parse_llama_config(kConfig));
  io::NamedTensors t;
  for (const auto& p : lm->named_parameters()) t.emplace_back(p.key(), p.value().detach());
  fs::create_directories(dir);
  write_file_atomic(dir + "/config.json", kConfig);
  io::save_safetensors(dir + "/model.safetensors", t);
}

std::map<std::string, at::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

at::Tensor random_ids(int64_t B, int64_t T) { return torch::randint(0, 61, {B, T}, torch::kLong); }

TEST(Lora, IsTheLowRankFormulaAndStartsAtZero) {
  torch::manual_seed(0);
  Lora lora(16, 24, LoraOptions().rank(4).alpha(8).dropout(0.5));
  const at::Tensor x = torch::randn({3, 5, 16});
  EXPECT_TRUE(torch::equal(lora->forward(x.clone()), torch::zeros({3, 5, 24}))) << "B = 0: no change at the start";
  {
    torch::NoGradGuard g;
    lora->lora_B.normal_();
  }
  lora->eval();  // no dropout
  const at::Tensor expected = 2.0 * x.matmul(lora->lora_A.t()).matmul(lora->lora_B.t());  // alpha / r = 2
  EXPECT_TRUE(torch::allclose(lora->forward(x), expected, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(lora->delta_weight(), 2.0 * lora->lora_B.matmul(lora->lora_A), 1e-6, 1e-7));
  // training mode applies dropout to x (some outputs change), evaluation does not
  lora->train();
  EXPECT_FALSE(torch::allclose(lora->forward(x), expected, 1e-5, 1e-6));
  // A's initial range: uniform in [-1/sqrt(in), 1/sqrt(in)]
  Lora wide(10000, 2, LoraOptions());
  EXPECT_LE(wide->lora_A.abs().max().item<double>(), 0.01);
  EXPECT_GT(wide->lora_A.abs().max().item<double>(), 0.0099);
  EXPECT_EQ(wide->lora_A.sizes(), (std::vector<int64_t>{24, 10000}));
}

TEST(Lora, DoublePrecisionGradients) {
  // gradients of the adapter's output with respect to x, A and B (forward reads the lora_A /
  // lora_B members, so the checked inputs are bound to them)
  torch::manual_seed(1);
  Lora lora(6, 5, LoraOptions().rank(3).alpha(4).dropout(0));
  auto fn = [&](const std::vector<at::Tensor>& in) {
    lora->lora_A = in[1];
    lora->lora_B = in[2];
    return lora->forward(in[0]);
  };
  auto gc = testutil::gradcheck(
      fn, {torch::randn({4, 6}, torch::kDouble), torch::randn({3, 6}, torch::kDouble), torch::randn({5, 3}, torch::kDouble)});
  EXPECT_TRUE(gc.ok(1e-7, 1e-6)) << gc.summary();
  EXPECT_GT(gc.checked, 0);
}

TEST(Lora, FineTuningTrainsOnlyAdaptersAndLeavesTheBaseBitwiseEqual) {
  testutil::TempDir tmp;
  write_base(tmp / "base", 5);
  LlamaForCausalLM lm = load_llama(tmp / "base");
  const auto base = snapshot(*lm);
  torch::manual_seed(6);
  const auto names = attach_lora(*lm, "mlp\\.(gate|up|down)_proj", LoraOptions().rank(4).alpha(8));
  ASSERT_EQ(names.size(), 6u);
  EXPECT_EQ(names[0], "model.layers.0.mlp.gate_proj");
  std::vector<at::Tensor> trainable;
  for (const auto& p : lm->named_parameters())
    if (p.value().requires_grad()) {
      EXPECT_NE(p.key().find(".adapter.lora_"), std::string::npos) << p.key();
      trainable.push_back(p.value());
    }
  EXPECT_EQ(trainable.size(), 12u);
  // a few AdamW steps on a fixed batch: the loss falls
  torch::optim::AdamW opt(trainable, torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
  lm->train();
  const at::Tensor ids = random_ids(4, 17);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    const at::Tensor logits = lm->forward(ids.narrow(1, 0, 16));  // [4, 16, V]
    const at::Tensor loss = torch::cross_entropy_loss(logits.reshape({-1, 61}), ids.narrow(1, 1, 16).reshape(-1));
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first - 0.3) << "first " << first << ", last " << last;
  for (const auto& p : lm->named_parameters()) {
    auto it = base.find(p.key());
    if (it == base.end()) continue;
    EXPECT_TRUE(torch::equal(p.value(), it->second)) << p.key() << " changed";
    EXPECT_FALSE(p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0) << p.key();
  }
  EXPECT_EQ(base.size(), 2u + 2u * 9u + 1u);  // embed, norm, lm_head; per layer 7 projections + 2 norms
}

TEST(Lora, AdapterFileReloadsToTheSameOutputsAndMerges) {
  testutil::TempDir tmp;
  write_base(tmp / "base", 7);
  LlamaForCausalLM lm = load_llama(tmp / "base");
  torch::manual_seed(8);
  attach_lora(*lm, "self_attn\\.[qv]_proj|mlp\\.down_proj", LoraOptions().rank(3).alpha(6).dropout(0.1));
  {
    torch::NoGradGuard g;
    for (const auto& p : lm->named_parameters())
      if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, 0.1);
  }
  lm->eval();
  const at::Tensor ids = random_ids(2, 12);
  const at::Tensor adapted = lm->forward(ids);
  const std::string file = tmp / "adapter.safetensors";
  save_adapters(*lm, file);
  // the file holds only the adapters (2 tensors per target) and is small next to the base
  const io::SafetensorsFile f = io::load_safetensors(file);
  EXPECT_EQ(f.tensors.size(), 12u);
  EXPECT_EQ(f.metadata.at("rank"), "3");
  EXPECT_LT(fs::file_size(file) * 4, fs::file_size(tmp / "base/model.safetensors"));

  LlamaForCausalLM again = load_llama(tmp / "base");
  const at::Tensor plain = again->forward(ids);
  EXPECT_FALSE(torch::allclose(plain, adapted, 1e-4, 1e-4));
  const auto targets = load_adapters(*again, file);
  EXPECT_EQ(targets.size(), 6u);
  again->eval();
  EXPECT_TRUE(torch::equal(again->forward(ids), adapted)) << "reloaded adapters give the same logits";

  const auto merged = merge_lora(*again);
  EXPECT_EQ(merged, targets);
  for (const auto& [name, p] : again->projections()) EXPECT_FALSE(p->adapter()) << name;
  EXPECT_TRUE(torch::allclose(again->forward(ids), adapted, 1e-4, 1e-5))
      << (again->forward(ids) - adapted).abs().max().item<double>();
}

TEST(Lora, ErrorsAreOneLineAndNameTheProblem) {
  testutil::TempDir tmp;
  write_base(tmp / "base", 9);
  LlamaForCausalLM lm = load_llama(tmp / "base");
  testutil::expect_error([&] { attach_lora(*lm, "mlp\\.gate", LoraOptions().rank(0)); }, {"lora: rank = 0"});
  testutil::expect_error([&] { attach_lora(*lm, "mlp\\.gate", LoraOptions().dropout(1)); }, {"dropout = 1"});
  testutil::expect_error([&] { attach_lora(*lm, "ffn\\.w1"); }, {"'ffn\\.w1' matches no projection", "model.layers.0.self_attn.q_proj"});
  testutil::expect_error([&] { attach_lora(*lm, "mlp\\.(gate"); }, {"not a valid regular expression"});
  testutil::expect_error([&] { save_adapters(*lm, tmp / "none.safetensors"); }, {"no adapter is attached"});
  EXPECT_FALSE(fs::exists(tmp / "none.safetensors"));

  attach_lora(*lm, "mlp\\.up_proj", LoraOptions().rank(2));
  const std::string file = tmp / "a.safetensors";
  save_adapters(*lm, file);
  // a model of another width: the shapes do not fit, and nothing is attached
  const std::string wide = std::string(kConfig).replace(std::string(kConfig).find("\"intermediate_size\": 64"), 23,
                                                        "\"intermediate_size\": 80");
  LlamaForCausalLM other(parse_llama_config(wide));
  testutil::expect_error([&] { load_adapters(*other, file); },
                         {"a.safetensors: model.layers.0.mlp.up_proj.adapter.lora_B has shape [64, 2], the model needs [80, 2]"});
  for (const auto& [name, p] : other->projections()) EXPECT_FALSE(p->adapter()) << name;
  // not an adapter file: the base checkpoint
  testutil::expect_error([&] { load_adapters(*other, tmp / "base/model.safetensors"); }, {"not a dynamoe adapter file"});
  // a truncated file
  const std::string bytes = read_file(file);
  write_file_atomic(tmp / "cut.safetensors", bytes.substr(0, bytes.size() - 7));
  testutil::expect_error([&] { load_adapters(*lm, tmp / "cut.safetensors"); }, {"cut.safetensors"});
}

}  // namespace
