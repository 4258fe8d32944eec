#include "dynamoe/adapters/adapter_file.h"

#include <torch/torch.h>

#include <map>
#include <sstream>

#include "dynamoe/adapters/lora.h"
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

void save_adapters(models::hf::LlamaForCausalLMImpl& lm, const std::string& path) {
  io::NamedTensors tensors;
  std::string targets;
  const LoraOptions* first = nullptr;
  for (auto& [name, p] : lm.projections()) {
    if (!p->adapter()) continue;
    auto lora = std::dynamic_pointer_cast<LoraImpl>(p->adapter());
    if (!lora) throw Error(str("save_adapters: the adapter of ", name, " is not a LoRA adapter"));
    const LoraOptions& o = lora->options();
    if (!first) {
      first = &o;
    } else if (o.rank() != first->rank() || o.alpha() != first->alpha() || o.dropout() != first->dropout()) {
      throw Error(str("save_adapters: the adapter of ", name, " has rank ", o.rank(), ", alpha ", o.alpha(),
                      ", dropout ", o.dropout(), "; the first has rank ", first->rank(), ", alpha ", first->alpha(),
                      ", dropout ", first->dropout(), " (one file holds one kind)"));
    }
    tensors.emplace_back(name + ".adapter.lora_A", lora->lora_A.detach());
    tensors.emplace_back(name + ".adapter.lora_B", lora->lora_B.detach());
    targets += (targets.empty() ? "" : ",") + name;
  }
  if (!first) throw Error(str("save_adapters: no adapter is attached to the model: nothing to write to ", path));
  std::ostringstream alpha, dropout;
  alpha.precision(17);
  dropout.precision(17);
  alpha << first->alpha();
  dropout << first->dropout();
  io::save_safetensors(path, tensors,
                       {{"dynamoe_adapter", "lora"},
                        {"rank", std::to_string(first->rank())},
                        {"alpha", alpha.str()},
                        {"dropout", dropout.str()},
                        {"targets", targets}});
}

std::vector<std::string> load_adapters(models::hf::LlamaForCausalLMImpl& lm, const std::string& path) {
  const io::SafetensorsFile f = io::load_safetensors(path);
  auto meta = [&](const char* key) {
    auto it = f.metadata.find(key);
    if (it == f.metadata.end()) throw Error(str(path, ": not a dynamoe adapter file (no '", key, "' in its metadata)"));
    return it->second;
  };
  const std::string kind = meta("dynamoe_adapter");
  if (kind != "lora") throw Error(str(path, ": adapter kind '", kind, "' is not supported (lora)"));
  LoraOptions o;
  try {
    o.rank(std::stoll(meta("rank"))).alpha(std::stod(meta("alpha"))).dropout(std::stod(meta("dropout")));
  } catch (const std::logic_error&) {  // stoll / stod
    throw Error(str(path, ": bad LoRA hyperparameters in the metadata (rank '", meta("rank"), "', alpha '", meta("alpha"),
                    "', dropout '", meta("dropout"), "')"));
  }
  try {
    o.validate();
  } catch (const Error& e) {
    throw Error(str(path, ": ", e.what()));
  }
  const std::vector<std::string> targets = split_commas(meta("targets"));
  if (targets.empty()) throw Error(str(path, ": the adapter file names no target projection"));
  std::map<std::string, models::hf::Projection> by_name;
  for (auto& [name, p] : lm.projections()) by_name.emplace(name, p);
  // Check everything before changing the model.
  for (const auto& t : targets) {
    auto it = by_name.find(t);
    if (it == by_name.end()) throw Error(str(path, ": target ", t, " is not a projection of this model"));
    const auto& p = it->second;
    const std::vector<int64_t> a_shape = {o.rank(), p->in_features()}, b_shape = {p->out_features(), o.rank()};
    for (const auto& [suffix, shape] : {std::make_pair(".adapter.lora_A", a_shape), std::make_pair(".adapter.lora_B", b_shape)}) {
      const at::Tensor& x = f.at(t + suffix);
      if (x.sizes() != at::IntArrayRef(shape))
        throw Error(dynamoe::str(path, ": ", t, suffix, " has shape ", x.sizes(), ", the model needs ", at::IntArrayRef(shape)));
    }
  }
  if (f.tensors.size() != 2 * targets.size())
    throw Error(str(path, ": ", f.tensors.size(), " tensors for ", targets.size(), " targets (expected 2 each)"));
  torch::NoGradGuard no_grad;
  for (const auto& t : targets) {
    auto& p = by_name.at(t);
    auto lora = std::make_shared<LoraImpl>(p->in_features(), p->out_features(), o);
    lora->lora_A.copy_(f.at(t + ".adapter.lora_A"));
    lora->lora_B.copy_(f.at(t + ".adapter.lora_B"));
    p->set_adapter(lora);
  }
  return targets;
}

}  // namespace dynamoe::adapters
