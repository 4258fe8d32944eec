#include "dynamoe/io/optimizer_state.h"

#include <torch/torch.h>

#include <set>
#include <sstream>

#include "dynamoe/util/error.h"

namespace dynamoe::io {
namespace {

std::string key_of(const at::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

/// The part of a saved name after the parameter ("exp_avg" of "layers.0.weight.exp_avg").
struct SavedName {
  std::string param, field;
};

SavedName split_saved(const std::string& name, const std::string& where) {
  const size_t dot = name.rfind('.');
  DYNAMOE_CHECK(dot != std::string::npos && dot > 0, where, ": optimizer state '", name,
                "' is not named <parameter>.<field>");
  return {name.substr(0, dot), name.substr(dot + 1)};
}

void check_like(const at::Tensor& saved, const at::Tensor& p, const std::string& name, const std::string& where) {
  DYNAMOE_CHECK(saved.sizes() == p.sizes() && saved.scalar_type() == p.scalar_type(), where, ": optimizer state '",
                name, "' is ", c10::toString(saved.scalar_type()), saved.sizes(), " but the parameter is ",
                c10::toString(p.scalar_type()), p.sizes());
}

}  // namespace

std::string optimizer_kind(const torch::optim::Optimizer& opt) {
  if (dynamic_cast<const torch::optim::AdamW*>(&opt)) return "adamw";
  if (dynamic_cast<const torch::optim::SGD*>(&opt)) return "sgd";
  throw Error("optimizer state: only adamw and sgd states can be saved");
}

std::map<const void*, std::string> parameter_names(const torch::nn::Module& model) {
  std::map<const void*, std::string> names;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) names.emplace(p.value().unsafeGetTensorImpl(), p.key());
  return names;
}

NamedTensors optimizer_state_tensors(const torch::optim::Optimizer& opt,
                                     const std::map<const void*, std::string>& names) {
  const std::string kind = optimizer_kind(opt);
  NamedTensors out;
  for (const auto& group : opt.param_groups())
    for (const at::Tensor& p : group.params()) {
      auto it = opt.state().find(key_of(p));
      if (it == opt.state().end()) continue;  // no step has reached this parameter yet
      auto name = names.find(p.unsafeGetTensorImpl());
      DYNAMOE_CHECK(name != names.end(), "optimizer state: a parameter of the optimizer is not in the model");
      const std::string& n = name->second;
      if (kind == "adamw") {
        const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
        out.emplace_back(n + ".exp_avg", s.exp_avg());
        out.emplace_back(n + ".exp_avg_sq", s.exp_avg_sq());
        out.emplace_back(n + ".step", torch::tensor(s.step(), torch::kInt64));
        if (s.max_exp_avg_sq().defined()) out.emplace_back(n + ".max_exp_avg_sq", s.max_exp_avg_sq());
      } else {
        const auto& s = static_cast<const torch::optim::SGDParamState&>(*it->second);
        if (s.momentum_buffer().defined()) out.emplace_back(n + ".momentum_buffer", s.momentum_buffer());
      }
    }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& opt, const std::map<const void*, std::string>& names,
                          const SafetensorsFile& f, const std::function<bool(const std::string&)>& may_skip) {
  const std::string& where = f.path;
  const std::string kind = optimizer_kind(opt);
  auto saved_kind = f.metadata.find("optimizer");
  DYNAMOE_CHECK(saved_kind != f.metadata.end(), where, ": no 'optimizer' entry in the metadata");
  DYNAMOE_CHECK(saved_kind->second == kind, where, ": the state is of optimizer '", saved_kind->second,
                "' but train.optimizer is '", kind, "'");
  // The saved fields, by parameter name.
  std::map<std::string, std::map<std::string, at::Tensor>> saved;
  for (const auto& [name, t] : f.tensors) {
    SavedName s = split_saved(name, where);
    saved[s.param][s.field] = t;
  }
  torch::NoGradGuard no_grad;
  size_t used = 0;
  opt.state().clear();
  for (auto& group : opt.param_groups())
    for (const at::Tensor& p : group.params()) {
      auto name = names.find(p.unsafeGetTensorImpl());
      DYNAMOE_CHECK(name != names.end(), "optimizer state: a parameter of the optimizer is not in the model");
      auto it = saved.find(name->second);
      if (it == saved.end()) continue;
      ++used;
      auto field = [&](const std::string& fname, bool required) -> at::Tensor {
        auto jt = it->second.find(fname);
        DYNAMOE_CHECK(jt != it->second.end() || !required, where, ": optimizer state of '", name->second,
                      "' has no '", fname, "'");
        return jt == it->second.end() ? at::Tensor() : jt->second;
      };
      const std::string full = name->second;
      if (kind == "adamw") {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        at::Tensor m = field("exp_avg", true), v = field("exp_avg_sq", true), st = field("step", true);
        check_like(m, p, full + ".exp_avg", where);
        check_like(v, p, full + ".exp_avg_sq", where);
        DYNAMOE_CHECK(st.numel() == 1 && st.scalar_type() == at::kLong && st.item<int64_t>() >= 0, where,
                      ": optimizer state '", full, ".step' is not a non-negative int64 scalar");
        s->exp_avg(m.clone());
        s->exp_avg_sq(v.clone());
        s->step(st.item<int64_t>());
        if (at::Tensor mx = field("max_exp_avg_sq", false); mx.defined()) {
          check_like(mx, p, full + ".max_exp_avg_sq", where);
          s->max_exp_avg_sq(mx.clone());
        }
        opt.state()[key_of(p)] = std::move(s);
      } else {
        auto s = std::make_unique<torch::optim::SGDParamState>();
        at::Tensor b = field("momentum_buffer", true);
        check_like(b, p, full + ".momentum_buffer", where);
        s->momentum_buffer(b.clone());
        opt.state()[key_of(p)] = std::move(s);
      }
    }
  if (used == saved.size()) return;
  std::set<std::string> here;
  for (const auto& [impl, n] : names) here.insert(n);
  for (const auto& [param, fields] : saved)
    DYNAMOE_CHECK(here.count(param) || (may_skip && may_skip(param)), where, ": optimizer state for '", param,
                  "', which is not a trained parameter of this model (wrong config?)");
}

void load_optimizer_archive(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& where) {
  try {
    std::istringstream is(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(is);
    opt.load(archive);
  } catch (const c10::Error& e) {
    throw Error(str(where, ": cannot load optimizer state: ", e.what_without_backtrace()));
  }
}

}  // namespace dynamoe::io
