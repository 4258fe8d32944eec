// dynamoe moe-apply: run one MoE layer on tensors from files and write everything it computed
// (docs/moe-apply.md), for checking dynamoe against independent implementations.
#include <torch/torch.h>

#include <iostream>

#include "commands.h"
#include "dynamoe/config/config.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/moe_layer.h"

namespace dynamoe::cli {
namespace {

int run(const ParsedArgs& a) {
  for (const char* required : {"config", "input", "out"})
    if (!a.has(required))
      throw UsageError(str("dynamoe moe-apply: --", required, " is required; see dynamoe moe-apply --help"));
  if (a.has("weights") && a.has("save-weights"))
    throw UsageError("dynamoe moe-apply: --weights and --save-weights exclude each other");
  const config::Config cfg = config::load_config(a.get("config"), a.all("set"));
  if (cfg.moe.gate_residual)
    throw ConfigError("config: moe.gate.residual = true needs a previous layer; moe-apply runs a single layer");
  const int64_t seed = a.get_int("seed", 0, 0), k_max = a.get_int("k-max", 0, 0);
  const bool training = a.has("train");

  io::SafetensorsFile in = io::load_safetensors(a.get("input"));
  const at::Tensor x_in = in.at("x");
  DYNAMOE_CHECK(x_in.dim() == 2 && (x_in.scalar_type() == torch::kFloat || x_in.scalar_type() == torch::kDouble),
                a.get("input"), ": x must be F32 or F64 [N, D], got ", c10::toString(x_in.scalar_type()), x_in.sizes());
  at::Tensor token_ids = in.tensors.count("token_ids") ? in.at("token_ids").to(torch::kLong)
                                                       : torch::arange(x_in.size(0), torch::kLong);
  at::Tensor grad_y;
  if (a.has("grad-output")) {
    io::SafetensorsFile g = io::load_safetensors(a.get("grad-output"));
    grad_y = g.at("grad_y");
    DYNAMOE_CHECK(grad_y.sizes() == x_in.sizes(), a.get("grad-output"), ": grad_y must be ", x_in.sizes(), ", got ",
                  grad_y.sizes());
    grad_y = grad_y.to(x_in.scalar_type());
  }

  torch::manual_seed(static_cast<uint64_t>(seed));
  moe::MoELayer layer(models::moe_layer_options(cfg.moe, x_in.size(1), cfg.moe.layers.e_max, k_max));
  layer->to(x_in.scalar_type());
  if (a.has("weights")) io::load_state_dict(*layer, a.get("weights"));
  if (a.has("save-weights")) io::save_safetensors(a.get("save-weights"), io::state_dict(*layer));
  layer->train(training);

  torch::manual_seed(static_cast<uint64_t>(seed));
  at::Tensor x = x_in.clone().requires_grad_(grad_y.defined());
  moe::MoELayerOutput out = layer->forward(x, {}, token_ids);
  const moe::Routing& r = out.routing;
  io::NamedTensors result = {{"y", out.y},
                             {"logits", r.logits},
                             {"probs", r.probs},
                             {"weights", r.weights},
                             {"mask", r.mask.to(torch::kByte)},
                             {"aux_loss", out.aux_loss}};
  if (r.h_norm.defined()) result.emplace_back("h_norm", r.h_norm);
  for (const auto& [name, value] : out.stats.losses)
    result.emplace_back("loss." + name, torch::tensor(value, torch::TensorOptions().dtype(torch::kDouble)));
  if (grad_y.defined()) {
    at::Tensor objective = (out.y * grad_y).sum() + out.aux_loss;
    std::vector<at::Tensor> wrt = {x};
    auto params = layer->named_parameters();
    for (const auto& p : params) wrt.push_back(p.value());
    auto grads = torch::autograd::grad({objective}, wrt, {}, false, false, /*allow_unused=*/true);
    result.emplace_back("grad.input", grads[0].defined() ? grads[0] : torch::zeros_like(x));
    for (size_t i = 0; i < params.size(); ++i)
      result.emplace_back("grad." + params[i].key(), grads[i + 1].defined() ? grads[i + 1] : torch::zeros_like(wrt[i + 1]));
  }
  if (training) {  // the controller's update a training step after this forward would make
    layer->after_step();
    for (const auto& [name, t] : layer->router_state())
      if (!t.requires_grad()) result.emplace_back("state.router." + name, t.detach().clone());
  }
  std::string kinds;
  for (const auto& e : layer->experts()) kinds += (kinds.empty() ? "" : ",") + e->kind();
  io::save_safetensors(a.get("out"), result,
                       {{"router", cfg.moe.router.kind()},
                        {"gate", cfg.moe.gate.kind()},
                        {"mode", training ? "train" : "eval"},
                        {"seed", std::to_string(seed)},
                        {"k_max", std::to_string(k_max)},
                        {"experts", kinds},
                        {"dropped", std::to_string(r.dropped)}});
  std::cout << "moe-apply: " << cfg.moe.router.kind() << " router, " << cfg.moe.gate.kind() << " gate, " << cfg.moe.layers.e_max
            << " experts, N=" << x.size(0) << " D=" << x.size(1) << ", " << (training ? "train" : "eval")
            << " mode: mean active experts " << out.stats.active_mean << ", wrote " << a.get("out") << "\n";
  return 0;
}

}  // namespace

Command moe_apply_command() {
  return {{"moe-apply",
           "run one MoE layer on tensors from files (for independent checking)",
           "dynamoe moe-apply --config LAYER.yaml --input X.safetensors --out OUT.safetensors\n"
           "       [--weights W.safetensors | --save-weights W.safetensors] [--grad-output G.safetensors]\n"
           "       [--train] [--seed S] [--k-max K] [--set KEY=VALUE]...",
           "The layer is built from the config's moe group with moe.layers.e_max experts. File layouts and\n"
           "tensor names: docs/moe-apply.md.",
           {{"config", "FILE", "config file; its moe group defines the layer"},
            {"input", "FILE", "safetensors with x [N, D] (and optionally token_ids [N])"},
            {"out", "FILE", "output safetensors (y, logits, probs, weights, mask, losses, gradients)"},
            {"weights", "FILE", "load the layer's parameters (strict)"},
            {"save-weights", "FILE", "write the seeded initial parameters"},
            {"grad-output", "FILE", "safetensors with grad_y [N, D]: also write gradients"},
            {"train", "", "training mode (routing noise on; writes the controller state after one update)"},
            {"seed", "S", "seed of initialisation and routing noise (default 0)"},
            {"k-max", "K", "the layer's cap on active experts (dynamoe, top_p; default 0: none)"},
            {"set", "KEY=VALUE", "override a config key", true}},
           0},
          run};
}

}  // namespace dynamoe::cli
