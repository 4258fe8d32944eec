#include "dynamoe/io/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "dynamoe/io/safetensors.h"
#include "dynamoe/io/optimizer_state.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/hash.h"

namespace dynamoe::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kPrefix = "step_";

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

/// Complete checkpoint folders (step_<digits>), oldest first.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind(kPrefix, 0) != 0) continue;
    const std::string digits = name.substr(std::strlen(kPrefix));
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    out.emplace_back(std::stoll(digits), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) s[2 * i] = digits[p[i] >> 4], s[2 * i + 1] = digits[p[i] & 15];
  return s;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> state_dict(const torch::nn::Module& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

std::string read_verified(const std::string& path) {
  std::string bytes = read_file(path);
  const fs::path state = fs::path(path).parent_path() / "state.json";
  std::error_code ec;
  if (!fs::is_regular_file(state, ec)) return bytes;  // not a checkpoint folder of dynamoe's
  nlohmann::json js;
  try {
    js = nlohmann::json::parse(read_file(state.string()));
  } catch (const nlohmann::json::exception&) {
    return bytes;  // load_trainer_state reports a damaged state.json where it matters
  }
  const std::string name = fs::path(path).filename().string();
  if (!js.is_object() || !js.contains("checksums") || !js["checksums"].is_object() || !js["checksums"].contains(name))
    return bytes;  // written before checksums existed
  const std::string want = js["checksums"][name].is_string() ? js["checksums"][name].get<std::string>() : "";
  const std::string got = fnv1a64_hex(bytes);
  DYNAMOE_CHECK(got == want, path, " is damaged: its FNV-1a checksum is ", got, " but state.json recorded ", want,
                " when it was written");
  return bytes;
}

void load_state_dict(torch::nn::Module& m, const std::string& path,
                     const std::function<bool(const std::string&)>& may_skip) {
  check_safetensors_file(path);
  SafetensorsFile f = parse_safetensors(read_verified(path), path);
  torch::NoGradGuard no_grad;
  size_t matched = 0;
  for (auto& [name, t] : state_dict(m)) {
    auto it = f.tensors.find(name);
    DYNAMOE_CHECK(it != f.tensors.end(), path, ": missing tensor '", name, "' (the model expects it)");
    const at::Tensor& src = it->second;
    DYNAMOE_CHECK(src.sizes() == t.sizes() && src.scalar_type() == t.scalar_type(), path, ": tensor '", name,
                  "' is ", c10::toString(src.scalar_type()), src.sizes(), " but the model expects ",
                  c10::toString(t.scalar_type()), t.sizes());
    // A diverged run's weights would evaluate to "loss nan" and train on as NaN: refused here.
    DYNAMOE_CHECK(!at::isFloatingType(src.scalar_type()) || at::isfinite(src).all().item<bool>(), path,
                  ": tensor '", name, "' holds ", at::isnan(src).sum().item<int64_t>(), " NaN and ",
                  at::isinf(src).sum().item<int64_t>(), " infinite values (saved from a run that diverged?)");
    t.copy_(src);
    ++matched;
  }
  if (matched != f.tensors.size()) {
    auto sd = state_dict(m);
    for (const auto& entry : f.tensors) {
      const std::string& name = entry.first;
      bool known = std::any_of(sd.begin(), sd.end(), [&](const auto& kv) { return kv.first == name; });
      DYNAMOE_CHECK(known || (may_skip && may_skip(name)), path, ": unexpected tensor '", name,
                    "' (not in the model: wrong config?)");
    }
  }
}

std::string cpu_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  at::Tensor s = gen.get_state();
  return to_hex(s.data_ptr<uint8_t>(), static_cast<size_t>(s.numel()));
}

void set_cpu_rng_state(const std::string& hex, const std::string& where) {
  DYNAMOE_CHECK(hex.size() % 2 == 0 && !hex.empty(), where, ": bad rng_state (length ", hex.size(), ")");
  at::Tensor s = at::empty({static_cast<int64_t>(hex.size() / 2)}, at::kByte);
  uint8_t* p = s.data_ptr<uint8_t>();
  auto nib = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error(str(where, ": bad rng_state character '", c, "'"));
  };
  for (size_t i = 0; i < hex.size() / 2; ++i) p[i] = static_cast<uint8_t>(nib(hex[2 * i]) * 16 + nib(hex[2 * i + 1]));
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(s);
  } catch (const c10::Error& e) {
    throw Error(str(where, ": cannot restore rng_state: ", e.what_without_backtrace()));
  }
}

std::string save_checkpoint(const std::string& checkpoints_dir, torch::nn::Module& model,
                            torch::optim::Optimizer& opt, const TrainerState& state,
                            const std::string& config_yaml, int64_t keep, const CheckpointExtras& extras) {
  make_dirs(checkpoints_dir);
  const fs::path final_dir = fs::path(checkpoints_dir) / step_dir_name(state.step);
  const fs::path tmp_dir = fs::path(checkpoints_dir) / (".tmp-" + step_dir_name(state.step) + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp_dir);
  make_dirs(tmp_dir.string());

  NamedTensors tensors = state_dict(model);
  tensors.insert(tensors.end(), extras.tensors.begin(), extras.tensors.end());
  const std::string model_bytes = safetensors_bytes(tensors, {{"format", "pt"}, {"producer", "dynamoe"}});
  NamedTensors opt_tensors = optimizer_state_tensors(opt, parameter_names(model));
  opt_tensors.insert(opt_tensors.end(), extras.optimizer_tensors.begin(), extras.optimizer_tensors.end());
  const std::string optimizer_bytes = safetensors_bytes(opt_tensors, {{"optimizer", optimizer_kind(opt)},
                                                                      {"producer", "dynamoe"}});
  write_file_atomic((tmp_dir / "model.safetensors").string(), model_bytes);
  write_file_atomic((tmp_dir / "optimizer.safetensors").string(), optimizer_bytes);
  nlohmann::json js = {{"step", state.step},
                       {"epoch", state.epoch},
                       {"batch_in_epoch", state.batch_in_epoch},
                       {"rng_state", state.rng_state},
                       {"checksums", {{"model.safetensors", fnv1a64_hex(model_bytes)},
                                      {"optimizer.safetensors", fnv1a64_hex(optimizer_bytes)}}}};
  write_file_atomic((tmp_dir / "state.json").string(), js.dump(1) + "\n");
  write_file_atomic((tmp_dir / "config.yaml").string(), config_yaml);
  fsync_dir(tmp_dir.string());

  std::error_code ec;
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp_dir, final_dir, ec);
  DYNAMOE_CHECK(!ec, "cannot move checkpoint into place at '", final_dir.string(), "': ", ec.message());
  fsync_dir(checkpoints_dir);

  auto all = list_checkpoints(checkpoints_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i].second, ec);
  // Leftovers of an interrupted save.
  for (const auto& e : fs::directory_iterator(checkpoints_dir))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
  return final_dir.string();
}

std::vector<std::string> list_checkpoint_dirs(const std::string& checkpoints_dir) {
  std::vector<std::string> out;
  for (const auto& [step, path] : list_checkpoints(checkpoints_dir)) out.push_back(path.string());
  return out;
}

std::string latest_checkpoint(const std::string& checkpoints_dir) {
  auto all = list_checkpoints(checkpoints_dir);
  return all.empty() ? std::string() : all.back().second.string();
}

std::string resolve_checkpoint(const std::string& arg) {
  std::error_code ec;
  fs::path p(arg);
  if (fs::is_regular_file(p, ec) && p.filename() == "model.safetensors") p = p.parent_path();
  DYNAMOE_CHECK(fs::exists(p, ec), "checkpoint '", arg, "' does not exist");
  DYNAMOE_CHECK(fs::is_directory(p, ec), "checkpoint '", arg,
                "' is a file, not a checkpoint folder, a run folder or a model.safetensors file");
  if (fs::exists(p / "model.safetensors")) return p.string();
  std::string latest = latest_checkpoint((p / "checkpoints").string());
  if (latest.empty()) latest = latest_checkpoint(p.string());
  DYNAMOE_CHECK(!latest.empty(), "'", arg,
                "' is neither a checkpoint folder (with model.safetensors) nor a run folder with checkpoints");
  return latest;
}

TrainerState load_trainer_state(const std::string& checkpoint_dir) {
  const std::string path = (fs::path(checkpoint_dir) / "state.json").string();
  nlohmann::json js;
  try {
    js = nlohmann::json::parse(read_file(path));
    TrainerState s;
    s.step = js.at("step").get<int64_t>();
    s.epoch = js.at("epoch").get<int64_t>();
    s.batch_in_epoch = js.at("batch_in_epoch").get<int64_t>();
    s.rng_state = js.at("rng_state").get<std::string>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(path, ": invalid trainer state: ", e.what()));
  }
}

}  // namespace dynamoe::io
