// The reference layer of examples/minimal_moe.cpp against dynamoe's MoELayer (kernel "loop"):
// outputs, load-balance loss and every gradient agree in float64.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/top_k.h"

#define MINIMAL_MOE_NO_MAIN
#include "../examples/minimal_moe.cpp"

namespace {

// The only place that knows MoELayerOptions: the dynamoe layer that computes what
// minimal::MinimalMoE computes (linear gate without bias, top-k renormalised, ffn/gelu experts,
// per-expert loop kernel, aux_loss = the load-balance loss alone), in float64.
dynamoe::moe::MoELayer make_dynamoe_layer(int64_t D, int64_t E, int64_t k, int64_t F) {
  dynamoe::moe::MoELayerOptions o;
  o.dim = D;
  o.n_experts = E;
  o.gate = dynamoe::moe::gate_choice("linear");  // no bias by default
  dynamoe::moe::TopKOptions top_k;
  top_k.k = k;
  top_k.normalize = true;
  o.router = dynamoe::kind_choice("top_k", top_k);
  o.expert = "ffn";
  o.expert_options = {D, F, "gelu"};
  o.kernel = "loop";
  o.losses.load_balance = 1.0;
  o.losses.z_loss = 0;
  dynamoe::moe::MoELayer layer(o);
  layer->to(torch::kDouble);
  return layer;
}

// Name of a dynamoe parameter in the minimal layer: gate.weight -> gate_weight; experts.<i>.* as is.
std::string minimal_name(const std::string& dynamoe_name) {
  return dynamoe_name == "gate.weight" ? "gate_weight" : dynamoe_name;
}

// Copies every parameter of `from` into `to` (names mapped by minimal_name); the two must hold
// exactly the same parameters.
void copy_parameters(dynamoe::moe::MoELayer& from, minimal::MinimalMoE& to) {
  torch::NoGradGuard no_grad;
  auto src = from->named_parameters();
  auto dst = to->named_parameters();
  ASSERT_EQ(src.size(), dst.size());
  for (const auto& kv : src) {
    const std::string name = minimal_name(kv.key());
    ASSERT_TRUE(dst.contains(name)) << "the minimal layer has no parameter " << name;
    ASSERT_EQ(dst[name].sizes(), kv.value().sizes()) << name;
    dst[name].copy_(kv.value());
  }
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Runs both layers on x, backpropagates the same scalar sum(y * g) + c * aux through each, and
// compares y, aux, d/dx and d/dparameter for every parameter.
void expect_same_layer(dynamoe::moe::MoELayer& ref, minimal::MinimalMoE& mine, const at::Tensor& x_value,
                       const std::string& what) {
  const int64_t N = x_value.size(0), D = x_value.size(1);
  const at::Tensor g = torch::randn({N, D}, torch::kDouble);  // weights of the outputs in the loss
  const double c = 0.7;                                        // weight of the aux loss

  at::Tensor x_ref = x_value.clone().requires_grad_(true);
  auto out = ref->forward(x_ref);
  (out.y * g).sum().add(out.aux_loss * c).backward();

  at::Tensor x_mine = x_value.clone().requires_grad_(true);
  auto [y, aux] = mine->forward(x_mine);
  (y * g).sum().add(aux * c).backward();

  ASSERT_EQ(y.sizes(), out.y.sizes()) << what;
  ASSERT_EQ(aux.dim(), 0) << what;
  EXPECT_EQ(y.scalar_type(), torch::kDouble) << what;
  EXPECT_LT(max_abs_diff(y, out.y), 1e-10) << what << ": outputs";
  EXPECT_LT(std::abs(aux.item<double>() - out.aux_loss.item<double>()), 1e-10) << what << ": aux loss";
  EXPECT_LT(max_abs_diff(x_mine.grad(), x_ref.grad()), 1e-10) << what << ": d/dx";
  EXPECT_GT(x_ref.grad().abs().max().item<double>(), 0) << what;

  auto mine_params = mine->named_parameters();
  for (const auto& kv : ref->named_parameters()) {
    // An expert no token chose is never run, so its parameters get no gradient: read that as 0.
    at::Tensor ga = kv.value().grad(), gb = mine_params[minimal_name(kv.key())].grad();
    if (!ga.defined()) ga = torch::zeros_like(kv.value());
    if (!gb.defined()) gb = torch::zeros_like(kv.value());
    EXPECT_LT(max_abs_diff(ga, gb), 1e-10) << what << ": d/d" << kv.key();
  }
}

struct Shape {
  int64_t N, D, E, k, F;
};

}  // namespace

TEST(MinimalMoE, MatchesDynamoeLoopLayer) {
  for (const Shape& s : {Shape{37, 16, 4, 1, 24}, Shape{37, 16, 6, 2, 24}, Shape{37, 16, 4, 2, 24},
                         Shape{37, 16, 6, 1, 24}, Shape{37, 16, 4, 4, 24}, Shape{5, 16, 6, 3, 24}}) {
    const std::string what = "N=" + std::to_string(s.N) + " E=" + std::to_string(s.E) + " k=" + std::to_string(s.k);
    torch::manual_seed(11 + s.E * 10 + s.k);
    auto ref = make_dynamoe_layer(s.D, s.E, s.k, s.F);
    {  // the biases start at 0: perturb every parameter so that each gradient path carries signal
      torch::NoGradGuard no_grad;
      for (auto& p : ref->parameters()) p.add_(torch::randn_like(p) * 0.3);
    }
    minimal::MinimalMoE mine(s.D, s.E, s.k, s.F);
    mine->to(torch::kDouble);
    copy_parameters(ref, mine);
    expect_same_layer(ref, mine, torch::randn({s.N, s.D}, torch::kDouble), what);
  }
}

// Exactly tied gate logits: both layers must give the tie to the lower expert index (a stable
// sort; torch::topk makes no such promise). Integer inputs and quarter-integer gate weights keep
// every logit exact, so the duplicated gate rows give bitwise-equal logits.
TEST(MinimalMoE, TiesGoToTheLowerIndex) {
  const int64_t N = 37, D = 16, E = 4, F = 24;
  for (int64_t k : {1, 3}) {
    torch::manual_seed(5 + k);
    auto ref = make_dynamoe_layer(D, E, k, F);
    at::Tensor W = ref->named_parameters()["gate.weight"];
    {
      torch::NoGradGuard no_grad;
      for (auto& p : ref->parameters()) p.add_(torch::randn_like(p) * 0.3);
      W.copy_(torch::randint(-3, 4, {E, D}, torch::kDouble) / 4);
      W[1].copy_(W[0]);  // experts 0 and 1 tie for every token, as do 2 and 3
      W[3].copy_(W[2]);
    }
    minimal::MinimalMoE mine(D, E, k, F);
    mine->to(torch::kDouble);
    copy_parameters(ref, mine);
    const at::Tensor x = torch::randint(-3, 4, {N, D}, torch::kDouble);
    const at::Tensor z = x.mm(W.detach().t());  // [N, E]
    ASSERT_TRUE(z.select(1, 0).equal(z.select(1, 1)) && z.select(1, 2).equal(z.select(1, 3)));
    expect_same_layer(ref, mine, x, "ties, k=" + std::to_string(k));
  }
}

TEST(MinimalMoE, AuxLossIsOneForUniformRouting) {
  // A zero gate gives p = 1/E for every token: P_i = 1/E, so E * sum_i f_i / E = 1 whatever f.
  minimal::MinimalMoE mine(8, 4, 2, 12);
  {
    torch::NoGradGuard no_grad;
    mine->gate_weight.zero_();
  }
  auto [y, aux] = mine->forward(torch::randn({10, 8}));
  EXPECT_NEAR(aux.item<double>(), 1.0, 1e-6);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{10, 8}));
}

TEST(MinimalMoE, ReadsIdxFilesAndReportsMissingOnes) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("minimal_moe_idx_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "a-images-idx3-ubyte").string();
  {
    // 00 00 08 03, dims 2 x 2 x 3 (big-endian), then 12 bytes.
    std::ofstream f(path, std::ios::binary);
    const unsigned char header[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
    f.write(reinterpret_cast<const char*>(header), sizeof(header));
    for (int i = 0; i < 12; ++i) f.put(static_cast<char>(250 - i));
  }
  at::Tensor t = minimal::read_idx_uint8(path);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(t.scalar_type(), torch::kUInt8);
  EXPECT_EQ(t[1][1][2].item<int64_t>(), 250 - 11);
  fs::resize_file(path, 16 + 11);  // one byte short
  EXPECT_THROW(minimal::read_idx_uint8(path), std::runtime_error);
  EXPECT_THROW(minimal::read_idx_uint8((dir / "missing").string()), std::runtime_error);
  fs::remove_all(dir);
}
