// Hugging Face LLaMA checkpoints: config parsing, HF parameter names, the adapter attach point,
// the loader's errors, and logits against tests/python/hf_llama_oracle.py, an independent
// float64 torch implementation that also writes the synthetic checkpoints (max abs error 1e-4).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "dynamoe/io/safetensors.h"
#include "dynamoe/models/hf/hf_checkpoint.h"
#include "dynamoe/models/hf/llama.h"
#include "dynamoe/models/hf/llama_config.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;
using namespace dynamoe::models::hf;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

/// A small HF config.json: D 48, F 96, 2 layers, 4 heads, V 97, 32 positions.
json tiny_config(const json& overrides = json::object()) {
  json c = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", 48},
            {"intermediate_size", 96},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 4},
            {"vocab_size", 97},
            {"max_position_embeddings", 32},
            {"rms_norm_eps", 1e-5},
            {"hidden_act", "silu"},
            {"rope_scaling", nullptr},
            {"tie_word_embeddings", false},
            {"torch_dtype", "float32"}};
  c.update(overrides);
  return c;
}

/// Writes a checkpoint folder from a fresh (random) model of `config`: config.json and the
/// tensors `edit` leaves, in one file or `shards` files with an index.
void write_checkpoint(const std::string& dir, const json& config, int shards = 1,
                      const std::function<void(io::NamedTensors&)>& edit = nullptr) {
  write_file_atomic(dir + "/config.json", config.dump(2));
  torch::manual_seed(5);
  LlamaForCausalLM lm(parse_llama_config(config.dump()));
  io::NamedTensors tensors;
  for (const auto& item : lm->named_parameters()) tensors.emplace_back(item.key(), item.value().detach());
  if (edit) edit(tensors);
  if (shards == 1) {
    io::save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
    return;
  }
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  const size_t per = (tensors.size() + shards - 1) / shards;
  for (int s = 0; s < shards; ++s) {
    const std::string file = str("model-0000", s + 1, "-of-0000", shards, ".safetensors");
    io::NamedTensors part;
    for (size_t i = s * per; i < std::min(tensors.size(), (s + 1) * per); ++i) {
      part.push_back(tensors[i]);
      index["weight_map"][tensors[i].first] = file;
    }
    io::save_safetensors(dir + "/" + file, part);
  }
  write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2));
}

/// The names of every tensor in the .safetensors files of a checkpoint folder.
std::set<std::string> checkpoint_names(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string file = e.path().filename().string();
    if (e.path().extension() != ".safetensors" || file == "reference.safetensors") continue;
    for (const auto& n : io::load_safetensors(e.path().string()).names) names.insert(n);
  }
  return names;
}

std::set<std::string> parameter_names(torch::nn::Module& m) {
  std::set<std::string> names;
  for (const auto& item : m.named_parameters()) names.insert(item.key());
  return names;
}

at::Tensor random_ids(int64_t B, int64_t T, int64_t V) { return torch::randint(0, V, {B, T}, torch::kLong); }

// ----------------------------------------------------------------------------- oracle cases

struct OracleCase {
  std::string name;
  std::string config;  ///< JSON overrides of the oracle's base config (D 48, 4 heads, V 97)
  int shards;
  std::string dtype;   ///< storage dtype
};

const OracleCase kCases[] = {
    {"single", "{}", 1, "F32"},
    {"sharded", "{}", 3, "F32"},
    {"gqa", R"({"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2})",
     1, "F32"},
    {"tied", R"({"tie_word_embeddings": true})", 1, "F32"},
    {"bf16", "{}", 1, "BF16"},
    {"attention_bias", R"({"attention_bias": true, "mlp_bias": true, "num_key_value_heads": 2})", 2, "F32"},
    {"mistral_mqa_head_dim_f16",
     R"({"model_type": "mistral", "head_dim": 16, "num_key_value_heads": 1, "sliding_window": null,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6})",
     1, "F16"},
};

void PrintTo(const OracleCase& c, std::ostream* os) { *os << c.name; }

/// Runs the Python oracle once for all cases (torch's import alone takes ~2 s).
class HfLlamaOracle : public ::testing::TestWithParam<OracleCase> {
 public:
  static void SetUpTestSuite() {
    tmp_ = std::make_unique<testutil::TempDir>();
    json spec = {{"cases", json::array()}};
    int seed = 1;
    for (const OracleCase& c : kCases)
      spec["cases"].push_back({{"dir", *tmp_ / c.name},
                               {"seed", seed++},
                               {"config", json::parse(c.config)},
                               {"shards", c.shards},
                               {"dtype", c.dtype},
                               {"batch", 2},
                               {"seq", 12}});
    write_file_atomic(*tmp_ / "spec.json", spec.dump(2));
    oracle_ = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() +
                                    "/tests/python/hf_llama_oracle.py batch " + (*tmp_ / "spec.json"));
  }
  static void TearDownTestSuite() { tmp_.reset(); }

 protected:
  static std::unique_ptr<testutil::TempDir> tmp_;
  static testutil::CommandResult oracle_;
};
std::unique_ptr<testutil::TempDir> HfLlamaOracle::tmp_;
testutil::CommandResult HfLlamaOracle::oracle_;

}  // namespace

TEST_P(HfLlamaOracle, LogitsMatchIndependentTorchImplementation) {
  const OracleCase& c = GetParam();
  ASSERT_EQ(oracle_.exit_code, 0) << oracle_.output;
  const std::string dir = *tmp_ / c.name;
  LlamaForCausalLM lm = load_llama(dir);
  const io::SafetensorsFile ref = io::load_safetensors(dir + "/reference.safetensors");
  const at::Tensor logits = lm->forward(ref.at("ids"));  // [B, T, V]
  ASSERT_EQ(logits.scalar_type(), at::kFloat);
  ASSERT_EQ(logits.sizes(), ref.at("logits").sizes());
  const double err = (logits.to(at::kDouble) - ref.at("logits")).abs().max().item<double>();
  std::cout << "[ HfLlama  ] " << c.name << ": max abs logits error " << err << " (|logits| max "
            << ref.at("logits").abs().max().item<double>() << ")\n";
  EXPECT_LE(err, 1e-4) << c.name;

  // The model's parameters are exactly the checkpoint's tensors, and frozen after loading.
  EXPECT_EQ(parameter_names(*lm), checkpoint_names(dir));
  for (const auto& p : lm->parameters()) EXPECT_FALSE(p.requires_grad());
  EXPECT_FALSE(lm->is_training());
}

INSTANTIATE_TEST_SUITE_P(HfLlama, HfLlamaOracle, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<OracleCase>& i) { return i.param.name; });

// ----------------------------------------------------------------------------- config

TEST(HfLlamaConfig, DefaultsFollowTransformers) {
  const json minimal = {{"model_type", "llama"},     {"hidden_size", 64}, {"intermediate_size", 128},
                        {"num_hidden_layers", 2},    {"num_attention_heads", 8}, {"vocab_size", 100}};
  LlamaConfig c = parse_llama_config(minimal.dump());
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  json m = minimal;
  m["model_type"] = "mistral";
  c = parse_llama_config(m.dump());
  EXPECT_EQ(c.num_key_value_heads, 8);  // MistralConfig's default
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  m["sliding_window"] = nullptr;
  m["head_dim"] = nullptr;
  c = parse_llama_config(m.dump());
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.head_dim, 8);
}

TEST(HfLlamaConfig, BadFieldsAreOneLineErrorsNamingFieldAndValue) {
  auto bad = [](const json& overrides, std::vector<std::string> parts) {
    parts.push_back("ckpt/config.json: ");
    testutil::expect_error([&] { parse_llama_config(tiny_config(overrides).dump(), "ckpt/config.json"); }, parts);
  };
  bad({{"model_type", "gpt2"}}, {"model_type = \"gpt2\" is not supported", "llama, mistral"});
  bad({{"num_key_value_heads", 3}}, {"num_key_value_heads = 3 must divide num_attention_heads = 4"});
  bad({{"hidden_act", "gelu"}}, {"hidden_act = \"gelu\" is not supported"});
  bad({{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}, {"rope_scaling = {", "llama3", "not supported"});
  bad({{"hidden_size", "48"}}, {"hidden_size = \"48\" is not an integer"});
  bad({{"hidden_size", 50}}, {"hidden_size = 50 must divide by num_attention_heads = 4"});
  bad({{"head_dim", 7}}, {"head_dim = 7 must be even"});
  bad({{"vocab_size", 0}}, {"vocab_size = 0 must be positive"});
  bad({{"tie_word_embeddings", "yes"}}, {"tie_word_embeddings = \"yes\" is not true or false"});
  bad({{"rms_norm_eps", -1.0}}, {"rms_norm_eps = -1 must be positive"});
  json no_layers = tiny_config();
  no_layers.erase("num_hidden_layers");
  testutil::expect_error([&] { parse_llama_config(no_layers.dump(), "x/config.json"); },
                         {"x/config.json", "missing field 'num_hidden_layers'"});
  testutil::expect_error([] { parse_llama_config("{\"model_type\": ", "x/config.json"); },
                         {"x/config.json", "invalid JSON"});
}

// ----------------------------------------------------------------------------- model

TEST(HfLlamaModel, ParameterNamesAreExactlyTheHfNames) {
  for (const bool tied : {false, true}) {
    for (const bool bias : {false, true}) {
      LlamaForCausalLM lm(parse_llama_config(
          tiny_config({{"tie_word_embeddings", tied}, {"attention_bias", bias}, {"mlp_bias", bias}}).dump()));
      std::vector<std::string> expected = {"model.embed_tokens.weight"};
      for (int l = 0; l < 2; ++l) {
        const std::string p = str("model.layers.", l, ".");
        for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
          expected.push_back(p + "self_attn." + proj + ".weight");
          if (bias) expected.push_back(p + "self_attn." + proj + ".bias");
        }
        for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
          expected.push_back(p + "mlp." + proj + ".weight");
          if (bias) expected.push_back(p + "mlp." + proj + ".bias");
        }
        expected.push_back(p + "input_layernorm.weight");
        expected.push_back(p + "post_attention_layernorm.weight");
      }
      expected.push_back("model.norm.weight");
      if (!tied) expected.push_back("lm_head.weight");
      std::vector<std::string> names;
      for (const auto& item : lm->named_parameters()) names.push_back(item.key());
      EXPECT_EQ(names, expected) << "tied " << tied << " bias " << bias;
    }
  }
}

TEST(HfLlamaModel, GqaShapesAndProjectionsByName) {
  LlamaForCausalLM lm(
      parse_llama_config(tiny_config({{"num_key_value_heads", 2}, {"head_dim", 16}}).dump()));
  auto params = lm->named_parameters();
  EXPECT_EQ(params["model.layers.0.self_attn.q_proj.weight"].sizes(), (std::vector<int64_t>{64, 48}));
  EXPECT_EQ(params["model.layers.0.self_attn.k_proj.weight"].sizes(), (std::vector<int64_t>{32, 48}));
  EXPECT_EQ(params["model.layers.0.self_attn.o_proj.weight"].sizes(), (std::vector<int64_t>{48, 64}));
  const auto projections = lm->projections();
  ASSERT_EQ(projections.size(), 2u * 7u + 1u);
  EXPECT_EQ(projections[0].first, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(projections[6].first, "model.layers.0.mlp.down_proj");
  EXPECT_EQ(projections[7].first, "model.layers.1.self_attn.q_proj");
  EXPECT_EQ(projections.back().first, "lm_head");
  EXPECT_EQ(projections[1].second->out_features(), 32);
  LlamaForCausalLM tied(parse_llama_config(tiny_config({{"tie_word_embeddings", true}}).dump()));
  EXPECT_EQ(tied->projections().size(), 2u * 7u);
}

namespace {

/// A LoRA-style test adapter: delta = x A^T B^T with its own parameters.
class LowRank : public Adapter {
 public:
  LowRank(int64_t in, int64_t out, int64_t r) {
    A = register_parameter("A", torch::randn({r, in}) * 0.1);
    B = register_parameter("B", torch::zeros({out, r}));
  }
  at::Tensor forward(const at::Tensor& x) override { return at::matmul(at::matmul(x, A.t()), B.t()); }
  at::Tensor A, B;
};

}  // namespace

TEST(HfLlamaModel, AdapterOutputIsAddedToTheFrozenBase) {
  testutil::TempDir tmp;
  write_checkpoint(tmp.str(), tiny_config());
  LlamaForCausalLM lm = load_llama(tmp.str());
  torch::manual_seed(3);
  const at::Tensor ids = random_ids(2, 10, 97);
  const at::Tensor base = lm->forward(ids);

  // A function adapter returning zeros changes nothing; one returning x changes the logits.
  Projection q0 = lm->projections()[0].second;
  q0->set_adapter(std::make_shared<FunctionAdapter>([](const at::Tensor& x) { return at::zeros_like(x); }));
  EXPECT_TRUE(torch::equal(lm->forward(ids), base));
  EXPECT_EQ(parameter_names(*lm).size(), checkpoint_names(tmp.str()).size());  // no parameters added

  // Low-rank adapters on every q_proj and v_proj: B = 0 leaves the logits, parameters appear
  // under the projection, and only they receive gradients.
  std::vector<std::shared_ptr<LowRank>> adapters;
  for (auto& [name, p] : lm->projections()) {
    if (name.find("q_proj") == std::string::npos && name.find("v_proj") == std::string::npos) continue;
    adapters.push_back(std::make_shared<LowRank>(p->in_features(), p->out_features(), 4));
    p->set_adapter(adapters.back());
  }
  ASSERT_EQ(adapters.size(), 4u);
  EXPECT_TRUE(torch::allclose(lm->forward(ids), base, 0.0, 1e-6));
  const auto names = parameter_names(*lm);
  EXPECT_TRUE(names.count("model.layers.0.self_attn.q_proj.adapter.A"));
  EXPECT_TRUE(names.count("model.layers.1.self_attn.v_proj.adapter.B"));
  EXPECT_EQ(lm->projections().size(), 2u * 7u + 1u);  // adapters do not add projections

  {
    torch::NoGradGuard no_grad;
    for (auto& a : adapters) a->B.normal_(0.0, 0.1);
  }
  const at::Tensor x = torch::randn({3, 48});
  Projection q1 = lm->projections()[7].second;  // model.layers.1.self_attn.q_proj
  EXPECT_TRUE(torch::allclose(q1->forward(x),
                              at::linear(x, q1->weight) + at::matmul(at::matmul(x, adapters[2]->A.t()), adapters[2]->B.t()),
                              1e-5, 1e-6));
  const at::Tensor adapted = lm->forward(ids);
  EXPECT_GT((adapted - base).abs().max().item<double>(), 1e-3);
  adapted.pow(2).mean().backward();
  for (const auto& item : lm->named_parameters()) {
    const bool is_adapter = item.key().find(".adapter.") != std::string::npos;
    EXPECT_EQ(item.value().grad().defined(), is_adapter) << item.key();
  }

  // Detaching restores the plain model.
  for (auto& [name, p] : lm->projections()) p->clear_adapter();
  EXPECT_EQ(parameter_names(*lm), checkpoint_names(tmp.str()));
  EXPECT_TRUE(torch::equal(lm->forward(ids), base));
}

TEST(HfLlamaModel, IsCausal) {
  torch::manual_seed(4);
  LlamaForCausalLM lm(parse_llama_config(tiny_config({{"num_key_value_heads", 2}}).dump()));
  at::Tensor ids = random_ids(2, 12, 97);
  const at::Tensor a = lm->forward(ids);
  ids.narrow(1, 8, 4).fill_(5);
  const at::Tensor b = lm->forward(ids);
  EXPECT_TRUE(torch::equal(a.narrow(1, 0, 8), b.narrow(1, 0, 8)));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 8, 4), b.narrow(1, 8, 4)));
}

TEST(HfLlamaModel, BadIdsAreClearErrors) {
  LlamaForCausalLM lm(parse_llama_config(tiny_config().dump()));
  at::Tensor ids = torch::zeros({2, 6}, torch::kLong);
  ids[1][4] = 97;
  testutil::expect_error([&] { lm->forward(ids); }, {"token id 97 at [1, 4]", "vocab_size = 97"});
  ids[1][4] = -1;
  testutil::expect_error([&] { lm->forward(ids); }, {"token id -1", "out of range"});
  testutil::expect_error([&] { lm->forward(torch::zeros({1, 33}, torch::kLong)); },
                         {"33 positions exceed max_position_embeddings = 32"});
  testutil::expect_error([&] { lm->forward(torch::zeros({1, 4}, torch::kInt)); }, {"int64"});
  LlamaForCausalLM mistral(parse_llama_config(tiny_config({{"model_type", "mistral"}, {"sliding_window", 8}}).dump()));
  testutil::expect_error([&] { mistral->forward(torch::zeros({1, 9}, torch::kLong)); },
                         {"9 positions exceed sliding_window = 8"});
  EXPECT_EQ(mistral->forward(torch::zeros({1, 8}, torch::kLong)).sizes(), (std::vector<int64_t>{1, 8, 97}));
}

// ----------------------------------------------------------------------------- loader errors

TEST(HfLlamaCheckpoint, ShardedAndSingleLoadTheSameWeights) {
  testutil::TempDir a, b;
  write_checkpoint(a.str(), tiny_config());
  write_checkpoint(b.str(), tiny_config(), 3);
  LlamaForCausalLM la = load_llama(a.str()), lb = load_llama(b.str());
  const auto pa = la->named_parameters(), pb = lb->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
}

TEST(HfLlamaCheckpoint, MissingTensor) {
  testutil::TempDir tmp;
  write_checkpoint(tmp.str(), tiny_config(), 1, [](io::NamedTensors& t) {
    t.erase(std::find_if(t.begin(), t.end(), [](auto& p) { return p.first == "model.layers.1.mlp.up_proj.weight"; }));
  });
  testutil::expect_error([&] { load_llama(tmp.str()); },
                         {tmp.str(), "'model.layers.1.mlp.up_proj.weight' (shape [96, 48]) is missing",
                          "not in model.safetensors"});
  testutil::TempDir sharded;
  write_checkpoint(sharded.str(), tiny_config(), 3, [](io::NamedTensors& t) {
    t.erase(std::find_if(t.begin(), t.end(), [](auto& p) { return p.first == "model.norm.weight"; }));
  });
  testutil::expect_error([&] { load_llama(sharded.str()); },
                         {"'model.norm.weight'", "is missing", "model.safetensors.index.json"});
}

TEST(HfLlamaCheckpoint, WrongShape) {
  testutil::TempDir tmp;
  write_checkpoint(tmp.str(), tiny_config(), 1, [](io::NamedTensors& t) {
    for (auto& [name, v] : t)
      if (name == "model.layers.0.self_attn.k_proj.weight") v = torch::zeros({47, 48});
  });
  testutil::expect_error([&] { load_llama(tmp.str()); },
                         {"model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight' has shape [47, 48]",
                          "expected [48, 48]"});
}

TEST(HfLlamaCheckpoint, UnexpectedTensorsAreListed) {
  testutil::TempDir tmp;
  write_checkpoint(tmp.str(), tiny_config(), 1, [](io::NamedTensors& t) {
    t.emplace_back("model.layers.0.self_attn.extra.weight", torch::zeros({2}));
    t.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", torch::zeros({6}));  // ignored
  });
  testutil::expect_error([&] { load_llama(tmp.str()); },
                         {"1 unexpected tensor", "'model.layers.0.self_attn.extra.weight' (model.safetensors)"});
}

TEST(HfLlamaCheckpoint, MissingShard) {
  testutil::TempDir tmp;
  write_checkpoint(tmp.str(), tiny_config(), 3);
  fs::remove(tmp / "model-00002-of-00003.safetensors");
  testutil::expect_error([&] { load_llama(tmp.str()); },
                         {"model.safetensors.index.json", "shard 'model-00002-of-00003.safetensors'",
                          "does not exist"});
}

TEST(HfLlamaCheckpoint, TruncatedFile) {
  testutil::TempDir tmp;
  write_checkpoint(tmp.str(), tiny_config());
  const std::string bytes = read_file(tmp / "model.safetensors");
  write_file_atomic(tmp / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  testutil::expect_error([&] { load_llama(tmp.str()); }, {"model.safetensors", "truncated"});
  write_file_atomic(tmp / "model.safetensors", bytes.substr(0, 100));
  testutil::expect_error([&] { load_llama(tmp.str()); }, {"model.safetensors", "truncated"});
}

TEST(HfLlamaCheckpoint, ConfigErrorsNameTheFile) {
  testutil::TempDir tmp;
  write_checkpoint(tmp.str(), tiny_config());
  write_file_atomic(tmp / "config.json", tiny_config({{"model_type", "gpt2"}}).dump());
  testutil::expect_error([&] { load_llama(tmp.str()); },
                         {tmp / "config.json", "model_type = \"gpt2\" is not supported"});
  write_file_atomic(tmp / "config.json", tiny_config({{"num_key_value_heads", 3}}).dump());
  testutil::expect_error([&] { load_llama(tmp.str()); },
                         {tmp / "config.json", "num_key_value_heads = 3 must divide num_attention_heads = 4"});
  fs::remove(tmp / "config.json");
  testutil::expect_error([&] { load_llama(tmp.str()); }, {"no config.json"});
  testutil::TempDir empty;
  write_file_atomic(empty / "config.json", tiny_config().dump());
  testutil::expect_error([&] { load_llama(empty.str()); },
                         {"neither model.safetensors nor model.safetensors.index.json"});
}

TEST(HfLlamaCheckpoint, DtypesAndTiedHead) {
  // Integer weights are refused; a tied model may carry an lm_head equal to the embedding.
  testutil::TempDir ints;
  write_checkpoint(ints.str(), tiny_config(), 1, [](io::NamedTensors& t) {
    for (auto& [name, v] : t)
      if (name == "model.norm.weight") v = v.to(torch::kInt);
  });
  testutil::expect_error([&] { load_llama(ints.str()); }, {"'model.norm.weight' has dtype Int"});
  testutil::TempDir tied;
  const json cfg = tiny_config({{"tie_word_embeddings", true}});
  write_checkpoint(tied.str(), cfg, 1, [](io::NamedTensors& t) { t.emplace_back("lm_head.weight", t[0].second.clone()); });
  EXPECT_NO_THROW(load_llama(tied.str()));
  write_checkpoint(tied.str(), cfg, 1, [](io::NamedTensors& t) { t.emplace_back("lm_head.weight", t[0].second + 1); });
  testutil::expect_error([&] { load_llama(tied.str()); },
                         {"'lm_head.weight' differs from model.embed_tokens.weight", "tie_word_embeddings = true"});
}
