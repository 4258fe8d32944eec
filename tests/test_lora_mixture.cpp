// Mixtures of LoRA experts (src/dynamoe/adapters/lora_mixture): the formula against a per-token
// loop, DynMoLE's broadcast to every expert, double-precision gradients, fine-tuning that leaves
// the base bitwise unchanged and trains through the auxiliary losses, adapter files, and errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "dynamoe/adapters/adapter_file.h"
#include "dynamoe/adapters/lora_mixture.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/models/hf/hf_checkpoint.h"
#include "dynamoe/moe/routers/top_k.h"
#include "dynamoe/moe/routers/tsallis_hybrid.h"
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

LlamaForCausalLM random_base(uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM lm(parse_llama_config(kConfig));
  for (auto& p : lm->parameters()) p.set_requires_grad(false);
  return lm;
}

void randomize_B(torch::nn::Module& m, double sd) {
  torch::NoGradGuard g;
  for (const auto& p : m.named_parameters())
    if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, sd);
}

LoraMixtureOptions small(const std::string& kind) {
  LoraMixtureOptions o = LoraMixtureOptions::preset(kind);
  o.experts = 4;
  o.lora.rank(3).alpha(6).dropout(0);
  return o;
}

TEST(LoraMixture, PresetsAreTheSpecDefaults) {
  for (const auto& kind : LoraMixtureOptions::preset_names()) {
    const auto o = LoraMixtureOptions::preset(kind);
    EXPECT_EQ(o.experts, 6) << kind;
    EXPECT_EQ(o.lora.rank(), 24);
    EXPECT_EQ(o.lora.alpha(), 48);
    EXPECT_EQ(o.lora.dropout(), 0.05);
  }
  EXPECT_EQ(LoraMixtureOptions::preset("mola").router.kind(), "top_k");
  EXPECT_EQ(LoraMixtureOptions::preset("mola").router.as<dynamoe::moe::TopKOptions>().k, 2);
  EXPECT_EQ(LoraMixtureOptions::preset("mola").losses.load_balance, 0);
  EXPECT_EQ(LoraMixtureOptions::preset("mixlora").losses.load_balance, 0.01);
  const auto d = LoraMixtureOptions::preset("dynmole");
  EXPECT_EQ(d.router.kind(), "tsallis_hybrid");
  EXPECT_EQ(d.router.as<dynamoe::moe::TsallisHybridOptions>().q, 1.1);
  EXPECT_EQ(d.router.as<dynamoe::moe::TsallisHybridOptions>().p, 0.75);
  EXPECT_EQ(d.router.as<dynamoe::moe::TsallisHybridOptions>().threshold, 0.9);
  EXPECT_EQ(d.losses.tsallis, 1.0);
  EXPECT_EQ(d.losses.load_balance, 0);
  // options survive the JSON of adapter files
  EXPECT_EQ(LoraMixtureOptions::from_json(d.to_json()).to_json(), d.to_json());
}

TEST(LoraMixture, IsTheWeightedSumOfTheChosenExpertsPerToken) {
  torch::manual_seed(0);
  const auto o = small("mola");
  LoraMixture m(10, 7, o);
  const at::Tensor x = torch::randn({2, 5, 10});
  EXPECT_TRUE(torch::equal(m->forward(x), torch::zeros({2, 5, 7}))) << "B = 0: no change at the start";
  randomize_B(*m, 1.0);
  m->eval();
  const at::Tensor y = m->forward(x);
  // the same per token, by hand: top-2 of softmax(W_g x), weights renormalised over the two
  const at::Tensor xs = x.reshape({10, 10});
  for (int64_t n = 0; n < 10; ++n) {
    const at::Tensor p = torch::softmax(m->router_weight.matmul(xs[n]), 0);
    const auto top = p.topk(2);
    const at::Tensor w = std::get<0>(top) / std::get<0>(top).sum();
    at::Tensor expect = torch::zeros({7});
    for (int64_t j = 0; j < 2; ++j) {
      const int64_t i = std::get<1>(top)[j].item<int64_t>();
      expect += w[j] * 2.0 * m->lora_B[i].matmul(m->lora_A[i].matmul(xs[n]));  // alpha / r = 2
    }
    EXPECT_TRUE(torch::allclose(y.reshape({10, 7})[n], expect, 1e-5, 1e-6)) << "token " << n;
  }
}

TEST(LoraMixture, DynMoLESendsUncertainTokensToEveryExpert) {
  torch::manual_seed(1);
  LoraMixture m(8, 6, small("dynmole"));
  randomize_B(*m, 1.0);
  m->eval();
  m->set_tallying(true);
  const at::Tensor x = torch::randn({9, 8});
  // a zero router: p uniform, normalised Tsallis entropy 1 > 0.9, so every expert is active with
  // weight 1/E (not renormalised)
  {
    torch::NoGradGuard g;
    m->router_weight.zero_();
  }
  at::Tensor mean_delta = torch::zeros({9, 6});
  for (int64_t i = 0; i < 4; ++i) mean_delta += 0.25 * 2.0 * x.matmul(m->lora_A[i].t()).matmul(m->lora_B[i].t());
  EXPECT_TRUE(torch::allclose(m->forward(x), mean_delta, 1e-5, 1e-6));
  EXPECT_EQ(m->tally().tokens, 9);
  EXPECT_EQ(m->tally().all_experts, 9);
  EXPECT_DOUBLE_EQ(m->tally().all_fraction(), 1.0);
  EXPECT_DOUBLE_EQ(m->tally().active_mean(), 4.0);
  // a confident router: one large logit per token; top-p keeps it plus the second (keep_top_k = 2)
  {
    torch::NoGradGuard g;
    m->router_weight.zero_();
    m->router_weight.index_put_({0, 0}, 50.0);
  }
  m->reset_tally();
  const at::Tensor xp = x.abs() + 0.5;  // x_0 > 0: expert 0 wins by far
  m->forward(xp);
  EXPECT_EQ(m->tally().all_experts, 0);
  EXPECT_DOUBLE_EQ(m->tally().active_mean(), 2.0);
  EXPECT_DOUBLE_EQ(m->tally().shares()[0], 0.5);
}

TEST(LoraMixture, DoublePrecisionGradients) {
  for (const char* kind : {"mola", "dynmole"}) {
    torch::manual_seed(2);
    LoraMixture m(6, 5, small(kind));
    m->to(torch::kDouble);
    m->eval();
    auto fn = [&](const std::vector<at::Tensor>& in) {
      m->router_weight = in[1];
      m->lora_A = in[2];
      m->lora_B = in[3];
      return m->forward(in[0]);
    };
    auto gc = testutil::gradcheck(fn, {torch::randn({5, 6}, torch::kDouble), torch::randn({4, 6}, torch::kDouble),
                                       torch::randn({4, 3, 6}, torch::kDouble), torch::randn({4, 5, 3}, torch::kDouble)});
    EXPECT_TRUE(gc.ok(1e-7, 1e-6)) << kind << ": " << gc.summary();
    EXPECT_GT(gc.checked, 0);
  }
}

TEST(LoraMixture, FineTuningLeavesTheBaseBitwiseEqualAndTrainsWithTheAuxLoss) {
  for (const char* kind : {"mixlora", "dynmole"}) {
    LlamaForCausalLM lm = random_base(5);
    std::map<std::string, at::Tensor> base;
    for (const auto& p : lm->named_parameters()) base[p.key()] = p.value().detach().clone();
    torch::manual_seed(6);
    LoraMixtureOptions o = small(kind);
    o.lora.dropout(0.05);
    const auto names = attach_lora_mixture(*lm, "mlp\\.(gate|up|down)_proj", o);
    ASSERT_EQ(names.size(), 6u);
    std::vector<at::Tensor> trainable;
    for (const auto& p : lm->named_parameters())
      if (p.value().requires_grad()) {
        EXPECT_NE(p.key().find(".adapter."), std::string::npos) << p.key();
        trainable.push_back(p.value());
      }
    EXPECT_EQ(trainable.size(), 18u);  // router, A, B per projection
    torch::optim::AdamW opt(trainable, torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
    lm->train();
    const at::Tensor ids = torch::randint(0, 61, {4, 17}, torch::kLong);
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      const at::Tensor logits = lm->forward(ids.narrow(1, 0, 16));
      at::Tensor loss = torch::cross_entropy_loss(logits.reshape({-1, 61}), ids.narrow(1, 1, 16).reshape(-1));
      const at::Tensor aux = mixture_aux_loss(*lm);
      ASSERT_TRUE(aux.defined()) << kind;
      EXPECT_GT(aux.item<double>(), 0);
      opt.zero_grad();
      (loss + aux).backward();
      opt.step();
      (step == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_LT(last, first - 0.3) << kind << ": first " << first << ", last " << last;
    // the router trained too (its gradient comes from the task and the aux loss)
    for (const auto& p : lm->named_parameters()) {
      auto it = base.find(p.key());
      if (it == base.end()) continue;
      EXPECT_TRUE(torch::equal(p.value(), it->second)) << kind << ": " << p.key() << " changed";
    }
    // tallies over an evaluation pass
    lm->eval();
    set_tallying(*lm, true);
    lm->forward(ids);
    const auto tallies = mixture_tallies(*lm);
    ASSERT_EQ(tallies.size(), 6u);
    for (const auto& [name, t] : tallies) {
      EXPECT_EQ(t.tokens, 4 * 17) << name;
      EXPECT_GE(t.active_mean(), 2.0) << name;
      double s = 0;
      for (double x : t.shares()) s += x;
      EXPECT_NEAR(s, 1.0, 1e-12);
    }
  }
}

TEST(LoraMixture, AdapterFileReloadsToTheSameOutputs) {
  testutil::TempDir tmp;
  LlamaForCausalLM lm = random_base(7);
  torch::manual_seed(8);
  attach_lora_mixture(*lm, "self_attn\\.v_proj|mlp\\.down_proj", small("dynmole"));
  randomize_B(*lm, 0.1);
  lm->eval();
  const at::Tensor ids = torch::randint(0, 61, {2, 12}, torch::kLong);
  const at::Tensor adapted = lm->forward(ids);
  const std::string file = tmp / "mix.safetensors";
  save_adapters(*lm, file);
  const io::SafetensorsFile f = io::load_safetensors(file);
  EXPECT_EQ(f.tensors.size(), 12u);
  EXPECT_EQ(f.metadata.at("dynamoe_adapter"), "lora_mixture");

  LlamaForCausalLM again = random_base(7);
  EXPECT_FALSE(torch::allclose(again->forward(ids), adapted, 1e-4, 1e-4));
  EXPECT_EQ(load_adapters(*again, file).size(), 4u);
  again->eval();
  EXPECT_TRUE(torch::equal(again->forward(ids), adapted)) << "reloaded mixtures give the same logits";
  testutil::expect_error([&] { merge_lora(*again); }, {"not a LoRA adapter", "only LoRA can be merged"});
}

TEST(LoraMixture, ErrorsAreOneLineAndNameTheField) {
  LlamaForCausalLM lm = random_base(9);
  testutil::expect_error([] { LoraMixtureOptions::preset("moe-lora"); }, {"unknown kind 'moe-lora'", "mola, mixlora, dynmole"});
  LoraMixtureOptions o = small("mola");
  o.router = dynamoe::moe::router_choice("expert_choice");
  testutil::expect_error([&] { attach_lora_mixture(*lm, "mlp", o); }, {"router 'expert_choice'", "token-choice"});
  o.router = dynamoe::moe::router_choice("hash");
  testutil::expect_error([&] { attach_lora_mixture(*lm, "mlp", o); }, {"router 'hash'"});
  o.router = dynamoe::KindChoice("top_q", std::make_shared<dynamoe::NoOptions>());
  testutil::expect_error([&] { attach_lora_mixture(*lm, "mlp", o); }, {"unknown router 'top_q'"});
  o = small("mola");
  o.router.as_mutable<dynamoe::moe::TopKOptions>().k = 5;
  testutil::expect_error([&] { attach_lora_mixture(*lm, "mlp", o); }, {"k = 5 must be in [1, 4]"});
  o = small("mola");
  o.experts = 1;
  testutil::expect_error([&] { attach_lora_mixture(*lm, "mlp", o); }, {"experts = 1"});
  testutil::expect_error([&] { attach_lora_mixture(*lm, "ffn", small("mola")); }, {"'ffn' matches no projection"});
  nlohmann::json j = small("dynmole").to_json();
  j["routing"].erase("q");
  testutil::expect_error([&] { LoraMixtureOptions::from_json(j); }, {"field 'routing.q' is missing"});
  j = small("dynmole").to_json();
  j["experts"] = "six";
  testutil::expect_error([&] { LoraMixtureOptions::from_json(j); }, {"field 'experts' = \"six\" has the wrong type"});
  for (const auto& [name, p] : lm->projections()) EXPECT_FALSE(p->adapter()) << name;
}

}  // namespace
