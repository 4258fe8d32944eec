// An independent oracle: `dynamoe moe-apply` against tests/python/moe_oracle.py, a plain torch
// implementation written from docs/methods.md sections 1-4 (outputs, routing, losses and
// every gradient; float32, max abs error <= 1e-5).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

using namespace dynamoe;

namespace {

struct OracleCase {
  std::string name, moe_yaml, extra_args;
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
  io::save_safetensors(tmp / "x.safetensors", {{"x", torch::randn({16, 8})}});
  io::save_safetensors(tmp / "g.safetensors", {{"grad_y", torch::randn({16, 8})}});
  const std::string files = " --config " + (tmp / "layer.yaml") + " --input " + (tmp / "x.safetensors") +
                            " --grad-output " + (tmp / "g.safetensors");
  auto run = testutil::run_command(testutil::cli() + " moe-apply" + files + " --out " + (tmp / "out.safetensors") +
                                   " --save-weights " + (tmp / "w.safetensors") + " --seed 3" + c.extra_args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto oracle = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() + "/tests/python/moe_oracle.py" +
                                      " --config " + (tmp / "layer.yaml") + " --input " + (tmp / "x.safetensors") +
                                      " --weights " + (tmp / "w.safetensors") + " --out " + (tmp / "out.safetensors") +
                                      " --grad-output " + (tmp / "g.safetensors") + " --atol 1e-5");
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
