// An independent oracle: `dynamoe moe-apply` against tests/python/moe_oracle.py, a plain torch
// implementation written from docs/methods.md sections 1-4 and 9 (outputs, routing, losses and
// every gradient; float32, max abs error <= 1e-5). The dynamic-k routers of section 9 run in
// float64 against 1e-10, from controller states other than their initial ones, and in training
// mode also compare the state after one controller update.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;

namespace {

struct OracleCase {
  std::string name, moe_yaml, extra_args;
  bool f64 = false;                      ///< float64 input (the layer then computes in float64), atol 1e-10
  std::map<std::string, double> state;   ///< router.* values written into the weights file
};

// Each case's moe group; every case also has layers: {e_max: 6} and, unless it sets its own,
// experts: {hidden: 16} and losses: {load_balance: 0.01, z_loss: 0.001, entropy: 0.0001}.
const OracleCase kCases[] = {
    {"top_k", "router: {kind: top_k}\n", ""},
    {"top_k_raw_swiglu", "router: {kind: top_k, normalize: false}\n  experts: {kind: swiglu, hidden: 16}\n", ""},
    {"top_p", "router: {kind: top_p}\n", ""},
    {"tsallis_hybrid",
     "router: {kind: tsallis_hybrid}\n  losses: {load_balance: 0.01, z_loss: 0.001, entropy: 0.0001, tsallis: 1.0}\n",
     ""},
    {"dynamoe_eval", "router: {kind: dynamoe}\n", " --k-max 2"},
    {"quadratic_polynomial", "router: {kind: top_k}\n  gate: {kind: quadratic_polynomial}\n", ""},
    {"quadratic_monomial", "router: {kind: top_p}\n  gate: {kind: quadratic_monomial}\n", ""},
    {"expert_choice_mlp_gate", "router: {kind: expert_choice}\n  gate: {kind: mlp}\n", ""},
    {"threshold_moepp_shared",
     "router: {kind: threshold}\n  experts: {hidden: 16, n_zero: 1, n_copy: 1, n_constant: 1, n_shared: 1}\n", ""},
    {"top_k_capacity", "router: {kind: top_k}\n  capacity_factor: 0.5\n", ""},
    // Dynamic-k routers (section 9), float64.
    {"dtop_p_eval", "router: {kind: dtop_p, temperature: 0.7}\n", " --k-max 4", true, {{"P", 0.45}, {"I", 0.3}}},
    {"dtop_p_train_normalized", "router: {kind: dtop_p, normalize_logits: true, normalize: true, target_k: 1.5}\n",
     " --train", true, {{"P", 0.62}, {"I", -0.2}, {"gamma", 1.4}}},
    {"relu_train", "router: {kind: relu}\n", " --train", true, {{"lambda", 0.05}}},
    {"relu_balance_capacity", "router: {kind: relu, balance: true, target_k: 3}\n  capacity_factor: 0.75\n",
     " --train", true, {{"lambda", 0.02}}},
    {"dynamoe_batch_eval", "router: {kind: dynamoe, scope: batch}\n", " --k-max 3", true, {{"tbar", 0.14}}},
    {"dynamoe_batch_train", "router: {kind: dynamoe, scope: batch, sigma: 0, tau: 0.6, momentum: 0.1}\n", " --train",
     true, {{"tbar", 0.2}}},
};

/// The layer config of a case: its moe group plus the common groups it does not set.
std::string layer_yaml(const OracleCase& c) {
  std::string y = "moe:\n  layers: {e_max: 6}\n  " + c.moe_yaml;
  if (c.moe_yaml.find("experts:") == std::string::npos) y += "  experts: {hidden: 16}\n";
  if (c.moe_yaml.find("losses:") == std::string::npos) y += "  losses: {load_balance: 0.01, z_loss: 0.001, entropy: 0.0001}\n";
  return y;
}

void PrintTo(const OracleCase& c, std::ostream* os) { *os << c.name; }

class MoEOracle : public ::testing::TestWithParam<OracleCase> {};

}  // namespace

TEST_P(MoEOracle, MoEApplyMatchesIndependentTorchImplementation) {
  const OracleCase& c = GetParam();
  testutil::TempDir tmp;
  write_file_atomic(tmp / "layer.yaml", layer_yaml(c));
  torch::manual_seed(21);
  const auto dtype = c.f64 ? torch::kDouble : torch::kFloat;
  io::save_safetensors(tmp / "x.safetensors", {{"x", torch::randn({16, 8}, dtype)}});
  io::save_safetensors(tmp / "g.safetensors", {{"grad_y", torch::randn({16, 8}, dtype)}});
  const std::string files = " --config " + (tmp / "layer.yaml") + " --input " + (tmp / "x.safetensors") +
                            " --grad-output " + (tmp / "g.safetensors");
  auto run = testutil::run_command(testutil::cli() + " moe-apply" + files + " --out " + (tmp / "out.safetensors") +
                                   " --save-weights " + (tmp / "w.safetensors") + " --seed 3" + c.extra_args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  if (!c.state.empty()) {  // a controller state other than the initial one, then run from it
    io::SafetensorsFile w = io::load_safetensors(tmp / "w.safetensors");
    io::NamedTensors named;
    for (const auto& [name, t] : w.tensors) named.emplace_back(name, t);
    for (const auto& [name, value] : c.state) {
      auto it = std::find_if(named.begin(), named.end(), [&](const auto& p) { return p.first == "router." + name; });
      ASSERT_NE(it, named.end()) << "no router." << name << " in the weights file";
      it->second = torch::full({}, value, it->second.options());
    }
    io::save_safetensors(tmp / "w.safetensors", named);
    run = testutil::run_command(testutil::cli() + " moe-apply" + files + " --out " + (tmp / "out.safetensors") +
                                " --weights " + (tmp / "w.safetensors") + " --seed 3" + c.extra_args);
    ASSERT_EQ(run.exit_code, 0) << run.output;
  }
  const io::SafetensorsFile out = io::load_safetensors(tmp / "out.safetensors");
  if (c.extra_args.find("--train") != std::string::npos)
    for (const auto& [name, value] : c.state)
      if (name != "gamma") EXPECT_TRUE(out.tensors.count("state.router." + name)) << c.name << ": no state.router." << name;
  auto oracle = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() + "/tests/python/moe_oracle.py" +
                                      " --config " + (tmp / "layer.yaml") + " --input " + (tmp / "x.safetensors") +
                                      " --weights " + (tmp / "w.safetensors") + " --out " + (tmp / "out.safetensors") +
                                      " --grad-output " + (tmp / "g.safetensors") + (c.f64 ? " --atol 1e-10" : " --atol 1e-5"));
  EXPECT_EQ(oracle.exit_code, 0) << c.name << "\n" << oracle.output;
  // Loading the saved weights reproduces the run exactly.
  auto again = testutil::run_command(testutil::cli() + " moe-apply" + files + " --out " + (tmp / "out2.safetensors") +
                                     " --weights " + (tmp / "w.safetensors") + " --seed 3" + c.extra_args);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto a = io::load_safetensors(tmp / "out.safetensors"), b = io::load_safetensors(tmp / "out2.safetensors");
  for (const auto& [name, t] : a.tensors) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}

INSTANTIATE_TEST_SUITE_P(Cases, MoEOracle, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<OracleCase>& i) { return i.param.name; });

TEST(MoEApply, BadInputsAreClearErrors) {
  testutil::TempDir tmp;
  write_file_atomic(tmp / "layer.yaml", "moe:\n  router: {kind: top_kk}\n");
  io::save_safetensors(tmp / "x.safetensors", {{"x", torch::randn({4, 3})}});
  auto r = testutil::run_command(testutil::cli() + " moe-apply --config " + (tmp / "layer.yaml") + " --input " +
                                 (tmp / "x.safetensors") + " --out " + (tmp / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("moe.router.kind = 'top_kk' is not one of"), std::string::npos) << r.output;
  write_file_atomic(tmp / "layer.yaml", "moe:\n  router: {kind: top_k}\n");
  io::save_safetensors(tmp / "bad.safetensors", {{"y", torch::randn({4, 3})}});
  r = testutil::run_command(testutil::cli() + " moe-apply --config " + (tmp / "layer.yaml") + " --input " +
                            (tmp / "bad.safetensors") + " --out " + (tmp / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no tensor named 'x'"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(tmp / "o.safetensors"));
}
