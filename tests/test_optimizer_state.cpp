// Optimizer state by parameter name (io/optimizer_state.h): saved, reloaded into a fresh
// optimizer and stepped, it continues bitwise where the original goes; a subset of the
// parameters (one process's experts) takes its part; wrong kinds, shapes and names are errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dynamoe/io/optimizer_state.h"
#include "dynamoe/io/safetensors.h"
#include "test_util.h"

using namespace dynamoe;

namespace {

struct Net : torch::nn::Module {
  Net() {
    a = register_module("a", torch::nn::Linear(4, 3));
    b = register_module("b", torch::nn::Linear(3, 2));
  }
  at::Tensor forward(const at::Tensor& x) { return b(torch::tanh(a(x))); }
  torch::nn::Linear a{nullptr}, b{nullptr};
};

std::unique_ptr<torch::optim::Optimizer> make(const std::string& kind, Net& net) {
  if (kind == "adamw")
    return std::make_unique<torch::optim::AdamW>(net.parameters(), torch::optim::AdamWOptions(0.01).weight_decay(0.1));
  return std::make_unique<torch::optim::SGD>(net.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
}

void step(Net& net, torch::optim::Optimizer& opt, int64_t seed) {
  torch::manual_seed(seed);
  opt.zero_grad();
  net.forward(torch::randn({5, 4})).square().sum().backward();
  opt.step();
}

io::SafetensorsFile saved(torch::optim::Optimizer& opt, Net& net) {
  return io::parse_safetensors(
      io::safetensors_bytes(io::optimizer_state_tensors(opt, io::parameter_names(net)), {{"optimizer", io::optimizer_kind(opt)}}),
      "optimizer.safetensors");
}

}  // namespace

TEST(OptimizerState, ReloadedStateContinuesBitwise) {
  for (const std::string kind : {"adamw", "sgd"}) {
    torch::manual_seed(0);
    Net net, copy;
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < net.parameters().size(); ++i) copy.parameters()[i].copy_(net.parameters()[i]);
    }
    auto opt = make(kind, net), opt2 = make(kind, copy);
    for (int s = 0; s < 3; ++s) step(net, *opt, s);
    // The copy takes the weights and the state, then both go on.
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < net.parameters().size(); ++i) copy.parameters()[i].copy_(net.parameters()[i]);
    }
    const io::SafetensorsFile f = saved(*opt, net);
    EXPECT_EQ(f.tensors.count("a.weight.exp_avg") + f.tensors.count("a.weight.momentum_buffer"), 1u) << kind;
    io::load_optimizer_state(*opt2, io::parameter_names(copy), f);
    for (int s = 3; s < 6; ++s) {
      step(net, *opt, s);
      step(copy, *opt2, s);
    }
    for (size_t i = 0; i < net.parameters().size(); ++i)
      EXPECT_TRUE(torch::equal(net.parameters()[i], copy.parameters()[i])) << kind << " parameter " << i;
  }
}

TEST(OptimizerState, AProcessTakesItsPartAndTheRestMustBeAccepted) {
  torch::manual_seed(0);
  Net net, part;
  auto opt = make("adamw", net);
  step(net, *opt, 1);
  const io::SafetensorsFile f = saved(*opt, net);
  // An optimizer over `b` alone (like a rank holding some experts): `a`'s state is refused
  // unless accepted as another process's.
  torch::optim::AdamW only_b(part.b->parameters(), torch::optim::AdamWOptions(0.01));
  std::map<const void*, std::string> b_names;
  for (const auto& p : part.b->named_parameters()) b_names.emplace(p.value().unsafeGetTensorImpl(), "b." + p.key());
  testutil::expect_error([&] { io::load_optimizer_state(only_b, b_names, f); },
                         {"optimizer state for 'a.bias', which is not a trained parameter of this model"});
  io::load_optimizer_state(only_b, b_names, f, [](const std::string& n) { return n.rfind("a.", 0) == 0; });
  EXPECT_EQ(only_b.state().size(), 2u);
}

TEST(OptimizerState, KindsShapesAndFieldsAreChecked) {
  torch::manual_seed(0);
  Net net;
  auto adam = make("adamw", net);
  step(net, *adam, 1);
  const io::SafetensorsFile f = saved(*adam, net);
  auto sgd = make("sgd", net);
  testutil::expect_error([&] { io::load_optimizer_state(*sgd, io::parameter_names(net), f); },
                         {"optimizer.safetensors: the state is of optimizer 'adamw' but train.optimizer is 'sgd'"});
  io::NamedTensors bad = io::optimizer_state_tensors(*adam, io::parameter_names(net));
  for (auto& [name, t] : bad)
    if (name == "b.weight.exp_avg") t = torch::zeros({5});
  const io::SafetensorsFile g = io::parse_safetensors(io::safetensors_bytes(bad, {{"optimizer", "adamw"}}), "x");
  testutil::expect_error([&] { io::load_optimizer_state(*adam, io::parameter_names(net), g); },
                         {"x: optimizer state 'b.weight.exp_avg' is Float[5] but the parameter is Float[2, 3]"});
  bad.erase(std::remove_if(bad.begin(), bad.end(), [](const auto& kv) { return kv.first == "a.bias.step"; }), bad.end());
  const io::SafetensorsFile h = io::parse_safetensors(io::safetensors_bytes(bad, {{"optimizer", "adamw"}}), "y");
  testutil::expect_error([&] { io::load_optimizer_state(*adam, io::parameter_names(net), h); },
                         {"y: optimizer state of 'a.bias' has no 'step'"});
}
