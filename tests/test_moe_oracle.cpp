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

const OracleCase kCases[] = {
    {"top_k", "router: top_k\n", ""},
    {"top_k_raw_swiglu", "router: top_k\n  top_k_normalize: false\n  expert: swiglu\n", ""},
    {"top_p", "router: top_p\n", ""},
    {"tsallis_hybrid", "router: tsallis_hybrid\n  tsallis: 1.0\n", ""},
    {"dynamoe_eval", "router: dynamoe\n", " --k-max 2"},
    {"quadratic_polynomial", "router: top_k\n  gate: quadratic_polynomial\n", ""},
    {"quadratic_monomial", "router: top_p\n  gate: quadratic_monomial\n", ""},
    {"expert_choice_mlp_gate", "router: expert_choice\n  gate: mlp\n", ""},
    {"threshold_moepp_shared", "router: threshold\n  n_zero: 1\n  n_copy: 1\n  n_constant: 1\n  n_shared: 1\n", ""},
    {"top_k_capacity", "router: top_k\n  capacity_factor: 0.5\n", ""},
};

void PrintTo(const OracleCase& c, std::ostream* os) { *os << c.name; }

class MoEOracle : public ::testing::TestWithParam<OracleCase> {};

}  // namespace

TEST_P(MoEOracle, MoEApplyMatchesIndependentTorchImplementation) {
  const OracleCase& c = GetParam();
  testutil::TempDir tmp;
  write_file_atomic(tmp / "layer.yaml", "moe:\n  e_max: 6\n  expert_hidden: 16\n  load_balance: 0.01\n  z_loss: 0.001\n"
                                        "  entropy: 0.0001\n  " + c.moe_yaml);
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
  write_file_atomic(tmp / "layer.yaml", "moe:\n  router: top_kk\n");
  io::save_safetensors(tmp / "x.safetensors", {{"x", torch::randn({4, 3})}});
  auto r = testutil::run_command(testutil::cli() + " moe-apply --config " + (tmp / "layer.yaml") + " --input " +
                                 (tmp / "x.safetensors") + " --out " + (tmp / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("moe.router = 'top_kk' is not one of"), std::string::npos) << r.output;
  write_file_atomic(tmp / "layer.yaml", "moe:\n  router: top_k\n");
  io::save_safetensors(tmp / "bad.safetensors", {{"y", torch::randn({4, 3})}});
  r = testutil::run_command(testutil::cli() + " moe-apply --config " + (tmp / "layer.yaml") + " --input " +
                            (tmp / "bad.safetensors") + " --out " + (tmp / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no tensor named 'x'"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(tmp / "o.safetensors"));
}
