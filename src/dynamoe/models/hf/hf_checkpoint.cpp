#include "dynamoe/models/hf/hf_checkpoint.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <set>

#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/process.h"
#include "dynamoe/util/json_text.h"

namespace dynamoe::models::hf {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";
constexpr size_t kListed = 5;  // names shown in an error before "..."

/// Buffers that old conversions saved but that the model recomputes.
bool is_ignored(const std::string& name) {
  const std::string suffix = ".rotary_emb.inv_freq";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

/// The shard files of `dir` in first-listed order, and the index's tensor -> file map (empty
/// for a single file).
struct WeightFiles {
  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;
  bool sharded = false;
};

WeightFiles find_weight_files(const std::string& dir) {
  WeightFiles w;
  if (fs::exists(fs::path(dir) / kSingle)) {
    w.files = {kSingle};
    return w;
  }
  const std::string index_path = (fs::path(dir) / kIndex).string();
  if (!fs::exists(index_path)) {
    const bool bin = fs::exists(fs::path(dir) / "pytorch_model.bin") ||
                     fs::exists(fs::path(dir) / "pytorch_model.bin.index.json");
    throw Error(str(dir, ": neither ", kSingle, " nor ", kIndex, " found",
                    bin ? " (pytorch_model.bin checkpoints are not supported: convert them to safetensors)" : ""));
  }
  const nlohmann::json index = parse_json(read_file(index_path), index_path);  // depth-limited
  DYNAMOE_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), index_path,
                ": expected an object with a \"weight_map\" object {tensor: file}");
  w.sharded = true;
  std::set<std::string> seen;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    DYNAMOE_CHECK(it->is_string(), index_path, ": weight_map entry '", it.key(), "' = ", json_excerpt(*it),
                  " is not a file name");
    const std::string file = it->get<std::string>();
    w.weight_map[it.key()] = file;
    if (!seen.insert(file).second) continue;
    DYNAMOE_CHECK(fs::is_regular_file(fs::path(dir) / file), index_path, ": shard '", file, "' (listed for tensor '",
                  it.key(), "') does not exist in ", dir);
    w.files.push_back(file);
  }
  DYNAMOE_CHECK(!w.files.empty(), index_path, ": weight_map is empty");
  return w;
}

std::string first_names(const std::vector<std::pair<std::string, std::string>>& named_files) {
  std::string out;
  for (size_t i = 0; i < named_files.size() && i < kListed; ++i)
    out += str(i ? ", " : "", "'", named_files[i].first, "' (", named_files[i].second, ")");
  if (named_files.size() > kListed) out += ", ...";
  return out;
}

/// Before the model is allocated: config.json's sizes must fit in memory (fp32), and the weight
/// files must be large enough to hold them (2 bytes a parameter at least, F16/BF16).
void check_sizes(const std::string& dir, const LlamaConfig& c, const WeightFiles& w) {
  const double D = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size),
               V = static_cast<double>(c.vocab_size), H = static_cast<double>(c.num_attention_heads),
               Hkv = static_cast<double>(c.num_key_value_heads > 0 ? c.num_key_value_heads : c.num_attention_heads),
               Dh = static_cast<double>(c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads);
  const double per_layer = 2 * D * H * Dh + 2 * D * Hkv * Dh + 3 * D * F;
  const double params = V * D * (c.tie_word_embeddings ? 1 : 2) + static_cast<double>(c.num_hidden_layers) * per_layer;
  const double memory = physical_memory_bytes();
  DYNAMOE_CHECK(memory <= 0 || 4 * params <= memory, dir, "/config.json describes ", static_cast<int64_t>(params),
                " parameters: ", static_cast<int64_t>(4 * params / 1e9), " GB in fp32, more than the ",
                static_cast<int64_t>(memory / 1e9), " GB of memory here");
  double bytes = 0;
  std::error_code ec;
  for (const std::string& file : w.files) {
    io::check_safetensors_file((fs::path(dir) / file).string());  // a truncated file is named as such first
    bytes += static_cast<double>(fs::file_size(fs::path(dir) / file, ec));
  }
  DYNAMOE_CHECK(bytes >= 2 * params, dir, ": config.json describes ", static_cast<int64_t>(params),
                " parameters (at least ", static_cast<int64_t>(2 * params), " bytes in F16/BF16) but the weight files "
                "hold ", static_cast<int64_t>(bytes), " bytes (another model's config.json?)");
}

}  // namespace

void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}

LlamaForCausalLM load_llama(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  DYNAMOE_CHECK(fs::is_directory(dir), dir, ": not a directory (expected a Hugging Face checkpoint folder)");
  DYNAMOE_CHECK(fs::exists(config_path), dir, ": no config.json (expected a Hugging Face checkpoint folder)");
  const LlamaConfig cfg = load_llama_config(config_path);
  const WeightFiles w = find_weight_files(dir);
  check_sizes(dir, cfg, w);

  LlamaForCausalLM lm(cfg);
  torch::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> expected;
  for (auto& item : lm->named_parameters()) expected[item.key()] = item.value();
  std::map<std::string, std::string> loaded_from;                   // tensor -> file
  std::vector<std::pair<std::string, std::string>> unexpected;      // (tensor, file)
  at::Tensor tied_head;
  std::string tied_head_file;
  for (const std::string& file : w.files) {
    const io::SafetensorsFile sf = io::load_safetensors((fs::path(dir) / file).string());
    for (const std::string& name : sf.names) {
      if (is_ignored(name)) continue;
      const at::Tensor& t = sf.tensors.at(name);
      auto prev = loaded_from.find(name);
      DYNAMOE_CHECK(prev == loaded_from.end(), dir, ": tensor '", name, "' appears in both ", prev->second, " and ",
                    file);
      auto it = expected.find(name);
      if (it == expected.end()) {
        if (cfg.tie_word_embeddings && name == "lm_head.weight") {
          tied_head = t;
          tied_head_file = file;
        } else {
          unexpected.emplace_back(name, file);
        }
        continue;
      }
      DYNAMOE_CHECK(is_float(t.scalar_type()), sf.path, ": tensor '", name, "' has dtype ", t.scalar_type(),
                    ", expected a floating type (F32, F16 or BF16)");
      DYNAMOE_CHECK(t.sizes() == it->second.sizes(), sf.path, ": tensor '", name, "' has shape ", t.sizes(),
                    ", expected ", it->second.sizes(), " (from config.json)");
      it->second.copy_(t);  // converts to fp32
      loaded_from[name] = file;
    }
  }
  for (const auto& item : lm->named_parameters()) {
    const std::string& name = item.key();
    if (loaded_from.count(name)) continue;
    size_t n_missing = 0;
    for (const auto& [n, p] : expected) n_missing += !loaded_from.count(n);
    std::string where;
    if (!w.sharded) {
      where = str("not in ", kSingle);
    } else if (auto f = w.weight_map.find(name); f != w.weight_map.end()) {
      where = str(kIndex, " lists it in ", f->second, " but that file does not contain it");
    } else {
      where = str("not in the weight_map of ", kIndex);
    }
    throw Error(dynamoe::str(dir, ": tensor '", name, "' (shape ", item.value().sizes(), ") is missing: ", where,
                    n_missing > 1 ? str(" (", n_missing, " tensors missing)") : "",
                    unexpected.empty() ? "" : str("; unexpected tensors: ", first_names(unexpected))));
  }
  DYNAMOE_CHECK(unexpected.empty(), dir, ": ", unexpected.size(),
                " unexpected tensor(s) not used by LlamaForCausalLM: ", first_names(unexpected));
  if (tied_head.defined()) {
    const at::Tensor& embed = lm->model->embed_tokens->weight;
    DYNAMOE_CHECK(tied_head.sizes() == embed.sizes() && at::equal(tied_head.to(at::kFloat), embed),
                  (fs::path(dir) / tied_head_file).string(),
                  ": tensor 'lm_head.weight' differs from model.embed_tokens.weight but config.json has "
                  "tie_word_embeddings = true");
  }
  freeze(*lm);
  lm->eval();
  return lm;
}

}  // namespace dynamoe::models::hf
