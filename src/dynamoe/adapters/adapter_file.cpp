#include "dynamoe/adapters/adapter_file.h"

#include <torch/torch.h>

#include <map>
#include <optional>
#include <sstream>

#include "dynamoe/adapters/lora.h"
#include "dynamoe/adapters/lora_mixture.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/error.h"

namespace dynamoe::adapters {
namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

}  // namespace

namespace {

/// The tensors of one adapter kind, with their shapes for a projection [out, in].
struct TensorSpec {
  const char* suffix;
  std::vector<int64_t> shape;
};

std::vector<TensorSpec> lora_tensors(int64_t r, int64_t in, int64_t out) {
  return {{".adapter.lora_A", {r, in}}, {".adapter.lora_B", {out, r}}};
}

std::vector<TensorSpec> mixture_tensors(int64_t E, int64_t r, int64_t in, int64_t out) {
  return {{".adapter.router_weight", {E, in}}, {".adapter.lora_A", {E, r, in}}, {".adapter.lora_B", {E, out, r}}};
}

std::string exact(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

}  // namespace

void save_adapters(torch::nn::Module& model, const std::string& path) {
  io::NamedTensors tensors;
  std::string targets, kind;
  std::optional<LoraOptions> lora_opts;
  std::optional<nlohmann::json> mixture_opts;
  for (auto& [name, p] : models::named_projections(model)) {
    if (!p->adapter()) continue;
    if (auto lora = std::dynamic_pointer_cast<LoraImpl>(p->adapter())) {
      const LoraOptions& o = lora->options();
      if (kind.empty()) {
        kind = "lora";
        lora_opts = o;
      } else if (kind != "lora") {
        throw Error(str("save_adapters: the adapter of ", name, " is LoRA, an earlier one a LoRA mixture (one file holds one kind)"));
      } else if (o.rank() != lora_opts->rank() || o.alpha() != lora_opts->alpha() || o.dropout() != lora_opts->dropout()) {
        throw Error(str("save_adapters: the adapter of ", name, " has rank ", o.rank(), ", alpha ", o.alpha(),
                        ", dropout ", o.dropout(), "; the first has rank ", lora_opts->rank(), ", alpha ", lora_opts->alpha(),
                        ", dropout ", lora_opts->dropout(), " (one file holds one kind)"));
      }
      tensors.emplace_back(name + ".adapter.lora_A", lora->lora_A.detach());
      tensors.emplace_back(name + ".adapter.lora_B", lora->lora_B.detach());
    } else if (auto mix = std::dynamic_pointer_cast<LoraMixtureImpl>(p->adapter())) {
      const nlohmann::json o = mix->options().to_json();
      if (kind.empty()) {
        kind = "lora_mixture";
        mixture_opts = o;
      } else if (kind != "lora_mixture") {
        throw Error(str("save_adapters: the adapter of ", name, " is a LoRA mixture, an earlier one LoRA (one file holds one kind)"));
      } else if (o != *mixture_opts) {
        throw Error(str("save_adapters: the mixture of ", name, " has options ", o.dump(), "; the first has ",
                        mixture_opts->dump(), " (one file holds one kind)"));
      }
      tensors.emplace_back(name + ".adapter.router_weight", mix->router_weight.detach());
      tensors.emplace_back(name + ".adapter.lora_A", mix->lora_A.detach());
      tensors.emplace_back(name + ".adapter.lora_B", mix->lora_B.detach());
    } else {
      throw Error(str("save_adapters: the adapter of ", name, " is neither LoRA nor a LoRA mixture"));
    }
    targets += (targets.empty() ? "" : ",") + name;
  }
  if (kind.empty()) throw Error(str("save_adapters: no adapter is attached to the model: nothing to write to ", path));
  std::map<std::string, std::string> meta = {{"dynamoe_adapter", kind}, {"targets", targets}};
  if (lora_opts) {
    meta["rank"] = std::to_string(lora_opts->rank());
    meta["alpha"] = exact(lora_opts->alpha());
    meta["dropout"] = exact(lora_opts->dropout());
  } else {
    meta["rank"] = std::to_string((*mixture_opts)["rank"].get<int64_t>());
    meta["alpha"] = exact((*mixture_opts)["alpha"].get<double>());
    meta["dropout"] = exact((*mixture_opts)["dropout"].get<double>());
    meta["mixture"] = mixture_opts->dump();
  }
  io::save_safetensors(path, tensors, meta);
}

std::vector<std::string> load_adapters(torch::nn::Module& model, const std::string& path) {
  const io::SafetensorsFile f = io::load_safetensors(path);
  auto meta = [&](const char* key) {
    auto it = f.metadata.find(key);
    if (it == f.metadata.end()) throw Error(str(path, ": not a dynamoe adapter file (no '", key, "' in its metadata)"));
    return it->second;
  };
  const std::string kind = meta("dynamoe_adapter");
  if (kind != "lora" && kind != "lora_mixture")
    throw Error(str(path, ": adapter kind '", kind, "' is not supported (lora, lora_mixture)"));
  LoraOptions o;
  LoraMixtureOptions mo;
  try {
    if (kind == "lora") {
      try {
        o.rank(std::stoll(meta("rank"))).alpha(std::stod(meta("alpha"))).dropout(std::stod(meta("dropout")));
      } catch (const std::logic_error&) {  // stoll / stod
        throw Error(str("bad LoRA hyperparameters in the metadata (rank '", meta("rank"), "', alpha '", meta("alpha"),
                        "', dropout '", meta("dropout"), "')"));
      }
      o.validate();
    } else {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(meta("mixture"));
      } catch (const nlohmann::json::exception&) {
        throw Error("the 'mixture' metadata is not valid JSON");
      }
      mo = LoraMixtureOptions::from_json(j);
    }
  } catch (const Error& e) {
    throw Error(str(path, ": ", e.what()));
  }
  const std::vector<std::string> targets = split_commas(meta("targets"));
  if (targets.empty()) throw Error(str(path, ": the adapter file names no target projection"));
  std::map<std::string, models::Projection> by_name;
  for (auto& [name, p] : models::named_projections(model)) by_name.emplace(name, p);
  auto specs_of = [&](const models::Projection& p) {
    return kind == "lora" ? lora_tensors(o.rank(), p->in_features(), p->out_features())
                          : mixture_tensors(mo.experts, mo.lora.rank(), p->in_features(), p->out_features());
  };
  // Check everything before changing the model.
  size_t expected = 0;
  for (const auto& t : targets) {
    auto it = by_name.find(t);
    if (it == by_name.end()) throw Error(str(path, ": target ", t, " is not a projection of this model"));
    for (const auto& spec : specs_of(it->second)) {
      const at::Tensor& x = f.at(t + spec.suffix);
      if (x.sizes() != at::IntArrayRef(spec.shape))
        throw Error(dynamoe::str(path, ": ", t, spec.suffix, " has shape ", x.sizes(), ", the model needs ",
                                 at::IntArrayRef(spec.shape)));
      ++expected;
    }
  }
  if (f.tensors.size() != expected)
    throw Error(str(path, ": ", f.tensors.size(), " tensors for ", targets.size(), " targets (expected ", expected, ")"));
  torch::NoGradGuard no_grad;
  for (const auto& t : targets) {
    auto& p = by_name.at(t);
    if (kind == "lora") {
      auto lora = std::make_shared<LoraImpl>(p->in_features(), p->out_features(), o);
      lora->lora_A.copy_(f.at(t + ".adapter.lora_A"));
      lora->lora_B.copy_(f.at(t + ".adapter.lora_B"));
      p->set_adapter(lora);
    } else {
      auto mix = std::make_shared<LoraMixtureImpl>(p->in_features(), p->out_features(), mo);
      mix->router_weight.copy_(f.at(t + ".adapter.router_weight"));
      mix->lora_A.copy_(f.at(t + ".adapter.lora_A"));
      mix->lora_B.copy_(f.at(t + ".adapter.lora_B"));
      p->set_adapter(mix);
    }
  }
  return targets;
}

}  // namespace dynamoe::adapters
