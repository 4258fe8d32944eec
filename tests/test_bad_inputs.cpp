// Bad inputs, table by table: bad configs (in-process, and some through `dynamoe train`) and corrupt
// files of every format dynamoe reads (safetensors, IDX, CIFAR-10, token corpora, multiple-choice
// JSONL, sweep files, Hugging Face checkpoints, adapter files). Each one must be refused with the
// right exception type (CLI: exit code 2), in one line that names the key or the file, within 1 s
// and 64 MiB of RSS growth, and without writing anything. The inputs this test found handled
// badly when it was written are at the end (kFormerDefects), each with what it did.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "dynamoe/adapters/adapter_file.h"
#include "dynamoe/config/config.h"
#include "dynamoe/data/cifar.h"
#include "dynamoe/data/idx.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/eval/multiple_choice.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/models/hf/hf_checkpoint.h"
#include "dynamoe/models/hf/llama_config.h"
#include "dynamoe/sweep/sweep_spec.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/hash.h"
#include "test_util.h"
#include "tiny_llama.h"

using namespace dynamoe;
namespace fs = std::filesystem;

namespace {

constexpr double kMaxSeconds = 1.0;
constexpr long kMaxGrowthKb = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Measuring one case

/// Resident set size now, in kB (/proc/self/statm: the second field, in pages).
long rss_kb() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

/// The process's peak resident set size so far, in kB.
long peak_rss_kb() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

/// Runs `fn`, which must throw an E whose message is one line holding every one of `parts`, in
/// under kMaxSeconds, the peak and current RSS growing by under kMaxGrowthKb.
template <class E>
void expect_bounded_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  const char* expected = std::is_same_v<E, ConfigError> ? "dynamoe::ConfigError" : "dynamoe::Error";
  const long peak_before = peak_rss_kb(), rss_before = rss_kb();
  const auto start = std::chrono::steady_clock::now();
  std::string message, wrong;
  bool thrown = false;
  try {
    fn();
  } catch (const Error& e) {
    if (std::is_same_v<E, Error> || dynamic_cast<const E*>(&e) != nullptr) {
      thrown = true;
      message = e.what();
    } else {
      wrong = str("threw a dynamoe::Error that is not a ", expected, ": ", e.what());
    }
  } catch (const std::exception& e) {
    wrong = str("threw a ", typeid(e).name(), " instead of a ", expected, ": ", first_line(e.what()));
  } catch (...) {
    wrong = str("threw something that is not a std::exception instead of a ", expected);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const long peak_growth = peak_rss_kb() - peak_before, rss_growth = rss_kb() - rss_before;
  if (!wrong.empty()) {
    ADD_FAILURE() << wrong;
  } else if (!thrown) {
    ADD_FAILURE() << "expected a " << expected << ", nothing was thrown";
  } else {
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    for (const std::string& p : parts)
      EXPECT_NE(message.find(p), std::string::npos) << "'" << p << "' not in: " << message.substr(0, 2000);
  }
  EXPECT_LT(seconds, kMaxSeconds) << "took " << seconds << " s";
  EXPECT_LT(peak_growth, kMaxGrowthKb) << "peak RSS grew by " << peak_growth << " kB";
  EXPECT_LT(rss_growth, kMaxGrowthKb) << "RSS grew by " << rss_growth << " kB";
}

/// Every entry under `dir` with its type, size and modification time: two equal snapshots mean that
/// nothing was written there in between.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const fs::file_status s = e.symlink_status();
    std::string what = std::to_string(static_cast<int>(s.type()));
    if (fs::is_regular_file(s)) what += str(" ", e.file_size(), " ", e.last_write_time().time_since_epoch().count());
    out[e.path().string()] = what;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing bad files

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string le64(uint64_t n) { return std::string(reinterpret_cast<const char*>(&n), 8); }

/// safetensors bytes: the 8-byte little-endian header length, the header, the data.
std::string st_bytes(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

/// One F32 tensor "w" of `shape` at `offsets` followed by `data_bytes` zero bytes.
std::string st_one(const std::string& shape, const std::string& offsets, size_t data_bytes,
                   const std::string& dtype = "F32") {
  return st_bytes(str(R"({"w":{"dtype":")", dtype, R"(","shape":)", shape, R"(,"data_offsets":)", offsets, "}}"),
                  std::string(data_bytes, '\0'));
}

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

/// An IDX file: magic 00 00 <type> <ndims>, big-endian dims, data.
std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::string& data) {
  std::string out = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((d >> shift) & 0xff));
  return out + data;
}

/// gzip of `data` in memory (small inputs only).
std::string gzip(const std::string& data) {
  z_stream zs{};
  DYNAMOE_CHECK(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK,
                "zlib");
  std::string out(deflateBound(&zs, data.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  DYNAMOE_CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END, "zlib");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

/// A valid gzip file of `head` followed by `zeros` zero bytes, deflated and written in 1 MiB chunks
/// (512 MiB of zeros become about 0.5 MB on disk; memory stays at a few MiB).
void write_gzip_bomb(const std::string& path, const std::string& head, uint64_t zeros) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  z_stream zs{};
  ASSERT_EQ(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_RLE), Z_OK);
  const std::string chunk(1 << 20, '\0');
  std::vector<char> buf(1 << 16);
  auto pump = [&](const char* data, size_t n, int flush) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    zs.avail_in = static_cast<uInt>(n);
    int rc = Z_OK;
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buf.data());
      zs.avail_out = static_cast<uInt>(buf.size());
      rc = deflate(&zs, flush);
      out.write(buf.data(), static_cast<std::streamsize>(buf.size() - zs.avail_out));
    } while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  };
  pump(head.data(), head.size(), Z_NO_FLUSH);
  for (uint64_t left = zeros; left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
    pump(chunk.data(), n, Z_NO_FLUSH);
    left -= n;
  }
  pump(nullptr, 0, Z_FINISH);
  deflateEnd(&zs);
  ASSERT_TRUE(out.good()) << path;
}

/// One CIFAR-10 record: the label byte and 3072 pixel bytes.
std::string cifar_record(uint8_t label) { return std::string(1, static_cast<char>(label)) + std::string(3072, '\x7f'); }

/// A good byte-level token corpus in `dir` (train.bin, val.bin, meta.json), then `edit` applied to
/// its meta.json. Returns the path of meta.json.
std::string write_corpus(const std::string& dir, const std::function<void(nlohmann::json&)>& edit = {}) {
  const std::vector<int32_t> train = {104, 101, 108, 108, 111, 256, 119, 111, 114, 108, 100, 256};
  const std::vector<int32_t> val = {104, 105, 256, 98, 121, 101, 256};
  data::write_token_file(dir + "/train.bin", train);
  data::write_token_file(dir + "/val.bin", val);
  nlohmann::json meta = {{"format", "dynamoe-tokens"}, {"corpus", "test"}, {"tokenizer", "byte"},
                         {"vocab_size", 257},          {"eot_id", 256},    {"splits", nlohmann::json::object()}};
  for (const char* split : {"train", "val"}) {
    const std::string bytes = read_file(dir + "/" + split + ".bin");
    meta["splits"][split] = {{"documents", 2}, {"tokens", bytes.size() / 2}, {"checksum", fnv1a64_hex(bytes)}};
  }
  if (edit) edit(meta);
  write_bytes(dir + "/meta.json", meta.dump());
  return dir + "/meta.json";
}

/// A multiple-choice line.
const char* kGoodItem = R"({"context": "The cat sat on the", "choices": [" mat.", " moon."], "label": 0})";

/// A sweep file whose base and axes are valid, with `extra` appended.
std::string sweep_text(const std::string& extra) {
  return "name: bad\nbase: {model: {kind: mlp, hidden: [8]}}\naxes:\n  train.seed: [0, 1]\n" + extra;
}

/// A Hugging Face config.json: the tiny LLaMA with `edit` applied.
std::string hf_config(const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(testutil::kTinyLlamaConfig);
  edit(j);
  return j.dump();
}

/// The tiny LLaMA's parameters under their Hugging Face names.
io::NamedTensors tiny_llama_tensors() {
  models::hf::LlamaForCausalLM lm(models::hf::parse_llama_config(testutil::kTinyLlamaConfig));
  io::NamedTensors out;
  for (const auto& p : lm->named_parameters()) out.emplace_back(p.key(), p.value().detach().clone());
  return out;
}

/// The tiny LLaMA the adapter files are loaded into (built once).
models::hf::LlamaForCausalLM& adapter_target() {
  static models::hf::LlamaForCausalLM lm(models::hf::parse_llama_config(testutil::kTinyLlamaConfig));
  return lm;
}

/// An adapter file for model.layers.0.mlp.up_proj of the tiny LLaMA (in 32, out 64) with LoRA
/// rank 2, its metadata edited by `edit` and the tensor `drop` left out.
void write_adapter(const std::string& path, const std::function<void(std::map<std::string, std::string>&)>& edit,
                   const std::string& drop = "") {
  std::map<std::string, std::string> meta = {{"dynamoe_adapter", "lora"},
                                             {"rank", "2"},
                                             {"alpha", "4"},
                                             {"dropout", "0"},
                                             {"targets", "model.layers.0.mlp.up_proj"}};
  if (edit) edit(meta);
  io::NamedTensors t;
  if (drop != "lora_A") t.emplace_back("model.layers.0.mlp.up_proj.adapter.lora_A", torch::zeros({2, 32}));
  if (drop != "lora_B") t.emplace_back("model.layers.0.mlp.up_proj.adapter.lora_B", torch::zeros({64, 2}));
  write_bytes(path, io::safetensors_bytes(t, meta));
}

/// A case whose input is an adapter file a.safetensors written by write_adapter(edit, drop).
std::function<std::string(const std::string&)> adapter_with(
    const std::function<void(std::map<std::string, std::string>&)>& edit, const std::string& drop = "") {
  return [edit, drop](const std::string& dir) {
    write_adapter(dir + "/a.safetensors", edit, drop);
    return dir + "/a.safetensors";
  };
}

// ---------------------------------------------------------------------------------------------
// Part A: bad configs

struct ConfigCase {
  std::string name;
  std::string yaml;                    ///< the config file's text
  std::vector<std::string> overrides;  ///< --set key=value
  std::vector<std::string> parts;      ///< the message must hold each (the key, and the value where it is shown)
};

/// Nine levels of aliases to nine-element lists: 9^9 scalars if expanded.
std::string billion_laughs() {
  std::string v = "[&a0 [x, x, x, x, x, x, x, x, x]";
  for (int i = 1; i < 9; ++i) {
    v += str(", &a", i, " [");
    for (int k = 0; k < 9; ++k) v += str(k ? ", " : "", "*a", i - 1);
    v += "]";
  }
  return "train: {lr: " + v + "]}\n";
}

const std::string kLm = "model: {kind: lm, d_model: 64}\ndata: {dataset: python-docs}\n";
const std::string kFinetune = "model: {kind: finetune}\ndata: {dataset: python-docs}\n";

const std::vector<ConfigCase> kConfigCases = {
    // unknown keys and typos
    {"unknown_top_level_key", "bogus: 1\n", {}, {"unknown key 'bogus'", "bad.yaml:1"}},
    {"typo_in_yaml", "train:\n  lrr: 0.1\n", {}, {"unknown key 'train.lrr'", "bad.yaml:2", "did you mean 'train.lr'"}},
    {"typo_in_set", "", {"model.widht=3"}, {"unknown key 'model.widht'", "--set model.widht=3"}},
    {"typo_in_group", "trian:\n  lr: 0.1\n", {}, {"unknown key 'trian'", "bad.yaml:1"}},
    {"option_of_another_router",
     "moe:\n  router:\n    kind: top_k\n    theta: 0.2\n",
     {},
     {"unknown key 'moe.router.theta'", "router 'top_k' has the options"}},
    {"option_of_the_default_router", "", {"moe.router.p=0.5"}, {"unknown key 'moe.router.p'"}},
    {"typo_in_dist", "dist: {timeout: 5}\n", {}, {"unknown key 'dist.timeout'", "did you mean 'dist.timeout_s'"}},
    {"unknown_subgroup", "train: {lr: 0.1, optim: {name: sgd}}\n", {}, {"unknown key 'train.optim'"}},
    {"non_scalar_key", "? [a, b]\n: 1\n", {}, {"unknown key", "bad.yaml:1"}},
    // keys that moved
    {"moved_e_max", "moe: {e_max: 4}\n", {}, {"moe.e_max", "is now moe.layers.e_max"}},
    {"moved_k_via_set", "", {"moe.k=2"}, {"moe.k", "is now moe.router.k"}},
    {"moved_gate_given_a_kind", "moe: {gate: linear}\n", {}, {"moe.gate", "is now moe.gate.kind"}},
    {"moved_train_schedule", "train: {schedule: cosine}\n", {}, {"train.schedule", "is now train.lr_schedule"}},
    {"typo_of_a_moved_key", "", {"moe.e_mx=4"}, {"unknown key 'moe.e_mx'", "moe.layers.e_max"}},
    // wrong types
    {"string_for_float", "train: {lr: fast}\n", {}, {"train.lr: expected a number, got 'fast'", "bad.yaml:1"}},
    {"float_for_int", "", {"train.batch_size=12.5"}, {"train.batch_size: expected an integer, got '12.5'"}},
    {"list_for_float", "train: {lr: [0.1, 0.2]}\n", {}, {"train.lr: expected a number", "[0.1, 0.2]"}},
    {"map_for_int", "train: {epochs: {n: 3}}\n", {}, {"train.epochs: expected an integer"}},
    {"word_for_bool", "train: {nesterov: maybe}\n", {}, {"train.nesterov: expected a boolean", "'maybe'"}},
    {"int_for_bool", "", {"train.nesterov=1"}, {"train.nesterov: expected a boolean", "'1'"}},
    {"list_for_string", "model: {kind: [mlp]}\n", {}, {"model.kind: expected a string"}},
    {"map_for_list", "model: {hidden: {a: 1}}\n", {}, {"model.hidden: expected a list of integers"}},
    {"word_in_list", "model: {hidden: [64, a]}\n", {}, {"model.hidden: expected a list of integers", "[64, a]"}},
    {"list_in_list", "model: {hidden: [[64, 32]]}\n", {}, {"model.hidden: expected a list of integers"}},
    {"hex_for_int", "", {"train.steps=0x10"}, {"train.steps: expected an integer, got '0x10'"}},
    // out of range
    {"negative_lr", "", {"train.lr=-1"}, {"train.lr = -1", "out of range"}},
    {"zero_lr", "train: {lr: 0}\n", {}, {"train.lr = 0", "out of range"}},
    {"batch_size_zero", "", {"train.batch_size=0"}, {"train.batch_size = 0 is out of range"}},
    {"threads_2000", "", {"train.threads=2000"}, {"train.threads = 2000 is out of range"}},
    {"lm_heads_not_dividing_d_model", kLm + "lm: {heads: 3}\n", {}, {"lm.heads = 3", "model.d_model = 64"}},
    {"d_model_above_2_20", "", {"model.d_model=1048577"}, {"model.d_model = 1048577 is out of range"}},
    {"expert_hidden_above_2_20", "", {"moe.experts.hidden=2097152"}, {"moe.experts.hidden = 2097152"}},
    {"cnn_fc_above_2_20", "", {"model.cnn_fc=1048577"}, {"model.cnn_fc = 1048577"}},
    {"e_min_above_e_max",
     "moe: {layers: {e_min: 9, e_max: 8}}\n",
     {},
     {"moe.layers.e_min = 9", "moe.layers.e_max = 8"}},
    {"router_k_above_e_max", "", {"moe.layers.e_max=4", "moe.router.k=5"}, {"moe.router.k = 5", "moe.layers.e_max"}},
    {"top_p_min_k_above_max_k",
     "moe: {router: {kind: top_p, min_k: 3, max_k: 2}}\n",
     {},
     {"moe.router.min_k = 3", "moe.router.max_k = 2"}},
    {"k_max_min_above_k_max_max",
     "",
     {"moe.layers.k_max_min=5", "moe.layers.k_max_max=4"},
     {"moe.layers.k_max_min = 5"}},
    {"dropout_above_0_95", "", {"model.dropout=1.5"}, {"model.dropout = 1.5"}},
    {"beta2_one", "", {"train.beta2=1"}, {"train.beta2 = 1"}},
    {"context_one", "", {"lm.context=1"}, {"lm.context = 1"}},
    {"moe_every_three", "", {"lm.moe_every=3"}, {"lm.moe_every = 3"}},
    {"expert_parallel_zero", "", {"moe.expert_parallel=0"}, {"moe.expert_parallel = 0"}},
    {"timeout_zero", "dist: {timeout_s: 0}\n", {}, {"dist.timeout_s = 0"}},
    {"router_temperature_zero", "moe: {router: {kind: top_k, temperature: 0}}\n", {}, {"moe.router.temperature = 0"}},
    {"zero_width_in_list", "", {"model.hidden=[64, 0]"}, {"model.hidden", "entry 1 = 0"}},
    {"negative_seed", "", {"train.seed=-1"}, {"train.seed = -1"}},
    {"router_tau_above_one", "moe: {router: {kind: dynamoe, tau: 1.5}}\n", {}, {"moe.router.tau = 1.5"}},
    {"mc_window_above_context",
     kFinetune + "finetune: {base: runs/lm, mc_context: 300}\n",
     {},
     {"finetune.mc_context + finetune.mc_continuation = 332", "lm.context = 256"}},
    // unknown kinds
    {"unknown_router_kind", "", {"moe.router.kind=top_q"}, {"moe.router.kind = 'top_q' is not one of"}},
    {"unknown_gate_kind", "moe: {gate: {kind: cubic}}\n", {}, {"moe.gate.kind = 'cubic' is not one of"}},
    {"unknown_model_kind", "", {"model.kind=transformer"}, {"model.kind = 'transformer' is not one of"}},
    {"unknown_optimizer", "train: {optimizer: adam}\n", {}, {"train.optimizer = 'adam' is not one of"}},
    {"unknown_lr_schedule", "", {"train.lr_schedule=linear"}, {"train.lr_schedule = 'linear' is not one of"}},
    {"unknown_activation", "", {"model.activation=swish"}, {"model.activation = 'swish' is not one of"}},
    {"unknown_dataset", "data: {dataset: imagenet}\n", {}, {"data.dataset = 'imagenet' is not one of"}},
    {"unknown_schedule", "", {"moe.layers.schedule=zigzag"}, {"moe.layers.schedule = 'zigzag' is not one of"}},
    {"unknown_expert_kind", "", {"moe.experts.kind=moe"}, {"moe.experts.kind = 'moe' is not one of"}},
    {"unknown_tokenizer", "", {"data.tokenizer=bpe"}, {"data.tokenizer = 'bpe' is not one of"}},
    {"unknown_adapter", "", {"finetune.adapter=dora"}, {"finetune.adapter = 'dora' is not one of"}},
    {"unknown_norm", "", {"model.norm=rmsnorm"}, {"model.norm = 'rmsnorm' is not one of"}},
    // a section given a value
    {"section_given_a_number", "model: 5\n", {}, {"'model' (bad.yaml:1) is a section of keys"}},
    {"section_given_a_value_via_set", "", {"train=3"}, {"'train' (--set train=3) is a section of keys"}},
    {"subsection_given_a_number", "moe: {layers: 4}\n", {}, {"'moe.layers'", "is a section of keys"}},
    // invalid YAML and a top level that is not a mapping
    {"tab_indentation", "train:\n\tlr: 0.1\n", {}, {"bad.yaml:2", "invalid YAML"}},
    {"unclosed_bracket", "model: {hidden: [64, 32}\n", {}, {"bad.yaml:1", "invalid YAML"}},
    {"unclosed_quote", "model: {kind: \"mlp}\n", {}, {"bad.yaml:2", "invalid YAML"}},
    {"binary_garbage", std::string("\x00\x01\xff\xfe garbage\x00", 14), {}, {"bad.yaml:1", "invalid YAML"}},
    {"nested_100000_deep", "train: {lr: " + nested(100000) + "}\n", {}, {"bad.yaml:1", "invalid YAML"}},
    {"top_level_list", "- train\n- model\n", {}, {"bad.yaml: expected a mapping at the top level"}},
    {"top_level_scalar", "just some text\n", {}, {"bad.yaml: expected a mapping at the top level"}},
    // NaN, infinity, huge numbers, alias bombs
    {"nan_via_set", "", {"train.lr=nan"}, {"train.lr: expected a number, got 'nan'"}},
    {"yaml_nan", "lm: {rope_base: .NaN}\n", {}, {"lm.rope_base: expected a number, got '.NaN'"}},
    {"yaml_inf", "", {"train.lr=.inf"}, {"train.lr: expected a number, got '.inf'"}},
    {"float_overflow", "", {"train.grad_clip=1e400"}, {"train.grad_clip: expected a number, got '1e400'"}},
    {"int_2_70",
     "",
     {"train.steps=1180591620717411303424"},
     {"train.steps: expected an integer", "1180591620717411303424"}},
    {"int_2_63",
     "train: {seed: 9223372036854775808}\n",
     {},
     {"train.seed: expected an integer", "9223372036854775808"}},
    {"int_2_70_in_list", "", {"model.hidden=[1180591620717411303424]"}, {"model.hidden", "1180591620717411303424"}},
    {"alias_bomb", billion_laughs(), {}, {"train.lr: expected a number"}},
    // empty strings
    {"empty_value_via_set", "", {"train.lr="}, {"train.lr: expected a number", "(--set train.lr=)"}},
    {"empty_kind", "model: {kind: ''}\n", {}, {"model.kind = '' is not one of"}},
    {"idx_without_path", "", {"data.dataset=idx"}, {"data.path = ''", "data.dataset = 'idx'"}},
    {"finetune_without_base", kFinetune, {}, {"finetune.base = ''"}},
    // bad --set syntax
    {"set_without_equals", "", {"train.lr"}, {"--set expects key=value, got 'train.lr'"}},
    {"set_without_key", "", {"=3"}, {"--set expects key=value, got '=3'"}},
    {"set_unparsable_value", "", {"train.lr=[1,"}, {"train.lr: cannot parse value '[1,'"}},
    // settings that do not fit together
    {"token_router_on_images", "", {"model.kind=moe_mlp", "moe.router.kind=hash"}, {"moe.router.kind = 'hash'"}},
    {"bf16_with_loop_kernel", "", {"moe.precision=bf16", "moe.kernel=loop"}, {"moe.precision = 'bf16'", "moe.kernel"}},
    {"lm_on_images", "", {"model.kind=lm"}, {"model.kind = 'lm'", "data.dataset = 'fashion-mnist'"}},
    {"min_lr_ratio_with_constant",
     "",
     {"train.lr_schedule=constant", "train.min_lr_ratio=0.5"},
     {"train.min_lr_ratio = 0.5", "train.lr_schedule = 'constant'"}},
    {"gradnoise_in_lm", kLm, {"train.gradnoise_every=5"}, {"train.gradnoise_every = 5"}},
    {"odd_rope_head_width", kLm, {"model.d_model=12"}, {"lm.positions = 'rope'", "model.d_model / lm.heads = 3"}},
    {"noncausal_router_in_lm",
     kLm,
     {"moe.router.kind=expert_choice"},
     {"moe.router.kind = 'expert_choice' is not causal"}},
    {"unknown_finetune_domain",
     kFinetune + "finetune: {base: runs/lm, domains: 'python-docs,wiki'}\n",
     {},
     {"finetune.domains", "'wiki'"}},
    {"mlp_without_hidden_layers", "", {"model.hidden=[]"}, {"model.hidden = []"}},
    {"cnn_without_channels", "", {"model.kind=cnn", "model.channels=[]"}, {"model.channels = []"}},
};

/// The config cases also run through `dynamoe train`.
const std::vector<std::string> kCliCases = {
    "unknown_top_level_key",         "typo_in_yaml",      "moved_e_max",    "string_for_float", "negative_lr",
    "unknown_router_kind",           "tab_indentation",   "top_level_list", "nan_via_set",      "int_2_70",
    "lm_heads_not_dividing_d_model", "set_without_equals"};

// ---------------------------------------------------------------------------------------------
// Part B: corrupt files

/// A corrupt file. `make` writes it (and any good files it needs) into the empty folder `dir` and
/// returns the path the error must name; `read` reads it. The message must also hold `parts`.
struct FileCase {
  std::string name;
  std::function<std::string(const std::string& dir)> make;
  std::function<void(const std::string& dir, const std::string& path)> read;
  std::vector<std::string> parts;
};

/// A case whose input is one file of `bytes`, called `file`.
std::function<std::string(const std::string&)> file_of(const std::string& file, const std::string& bytes) {
  return [file, bytes](const std::string& dir) {
    write_bytes(dir + "/" + file, bytes);
    return dir + "/" + file;
  };
}

void load_st(const std::string&, const std::string& path) { io::load_safetensors(path); }
void check_st(const std::string&, const std::string& path) { io::check_safetensors_file(path); }
void read_idx(const std::string&, const std::string& path) { data::read_idx(path); }
/// read_idx_images(<dir>/images, <dir>/labels).
void read_images(const std::string& dir, const std::string&) {
  data::read_idx_images(dir + "/images", dir + "/labels");
}
void read_cifar(const std::string&, const std::string& path) { data::read_cifar10({path}); }
void open_corpus(const std::string& dir, const std::string&) { data::open_token_corpus(dir); }
void read_mc(const std::string&, const std::string& path) { eval::read_multiple_choice(path); }
void load_sweep(const std::string&, const std::string& path) { sweep::expand(sweep::load_sweep(path)); }
void load_hf_config(const std::string&, const std::string& path) { models::hf::load_llama_config(path); }
void load_hf(const std::string& dir, const std::string&) { models::hf::load_llama(dir); }
void load_adapter(const std::string&, const std::string& path) { adapters::load_adapters(*adapter_target(), path); }

/// Good IDX images (3 x 2 x 2) and labels (`labels` of them) in `dir`; returns the path of `bad` ("images" or
/// "labels") after replacing it with `bytes` when given.
std::function<std::string(const std::string&)> idx_pair(uint32_t labels, const std::string& bad,
                                                        const std::string& bytes = "") {
  return [=](const std::string& dir) {
    write_bytes(dir + "/images", idx_bytes(data::kIdxUint8, {3, 2, 2}, std::string(12, '\x10')));
    write_bytes(dir + "/labels", idx_bytes(data::kIdxUint8, {labels}, std::string(labels, '\x01')));
    if (!bytes.empty()) write_bytes(dir + "/" + bad, bytes);
    return dir + "/" + bad;
  };
}

/// A good corpus with meta.json edited; the error names meta.json.
std::function<std::string(const std::string&)> corpus_meta(const std::function<void(nlohmann::json&)>& edit) {
  return [edit](const std::string& dir) { return write_corpus(dir, edit); };
}

/// A good corpus whose val.bin is then replaced by `bytes(good val bytes)`; the error names val.bin.
std::function<std::string(const std::string&)> corpus_val(const std::function<std::string(const std::string&)>& bytes) {
  return [bytes](const std::string& dir) {
    write_corpus(dir);
    const std::string val = dir + "/val.bin";
    write_bytes(val, bytes(read_file(val)));
    return val;
  };
}

/// The tiny LLaMA's config.json, edited; the error names config.json.
std::function<std::string(const std::string&)> hf_config_file(const std::function<void(nlohmann::json&)>& edit) {
  return file_of("config.json", hf_config(edit));
}

const std::vector<FileCase> kFileCases = {
    // safetensors
    {"st_empty_file", file_of("w.safetensors", ""), load_st, {"truncated safetensors file (0 bytes"}},
    {"st_three_bytes", file_of("w.safetensors", "abc"), load_st, {"truncated safetensors file (3 bytes"}},
    {"st_header_beyond_the_file", file_of("w.safetensors", le64(100) + "{}"), check_st,
     {"header length 100 exceeds the file size 10"}},
    {"st_header_length_2_63", file_of("w.safetensors", le64(uint64_t{1} << 63) + "{}"), load_st,
     {"header length 9223372036854775808 is over the 100000000-byte limit"}},
    {"st_header_over_100000000", file_of("w.safetensors", le64(100000001) + "{}"), check_st,
     {"header length 100000001 is over the 100000000-byte limit"}},
    {"st_100MB_of_spaces_declared_in_a_short_file", file_of("w.safetensors", le64(100000000) + std::string(64, ' ')),
     load_st, {"header length 100000000 exceeds the file size 72"}},
    {"st_header_not_json", file_of("w.safetensors", st_bytes("not json")), load_st,
     {"safetensors header: invalid JSON"}},
    {"st_header_not_an_object", file_of("w.safetensors", st_bytes("[1, 2]")), load_st,
     {"safetensors header is not a JSON object"}},
    {"st_entry_not_an_object", file_of("w.safetensors", st_bytes(R"({"w": 5})")), load_st,
     {"malformed header entry for tensor 'w'"}},
    {"st_entry_without_offsets", file_of("w.safetensors", st_bytes(R"({"w": {"dtype": "F32", "shape": [1]}})")),
     load_st,
     {"malformed header entry for tensor 'w'"}},
    {"st_unknown_dtype", file_of("w.safetensors", st_one("[1]", "[0, 4]", 4, "F128")), load_st,
     {"tensor 'w' has unsupported dtype 'F128'"}},
    {"st_negative_shape", file_of("w.safetensors", st_one("[-1]", "[0, 4]", 4)), load_st,
     {"tensor 'w' has a bad shape entry -1"}},
    {"st_shape_not_a_list", file_of("w.safetensors", st_one("4", "[0, 16]", 16)), load_st,
     {"malformed header entry for tensor 'w'"}},
    {"st_shape_product_overflows_int64",
     file_of("w.safetensors", st_one("[1099511627775, 1099511627775]", "[0, 4]", 4)), load_st,
     {"tensor 'w' has too many elements"}},
    {"st_dimension_above_2_40", file_of("w.safetensors", st_one("[2199023255552]", "[0, 4]", 4)), load_st,
     {"tensor 'w' dimension 2199023255552 is too large"}},
    {"st_offsets_reversed", file_of("w.safetensors", st_one("[1]", "[4, 0]", 0)), load_st,
     {"tensor 'w' data [4, 0) lies outside the 0 data bytes"}},
    {"st_offsets_beyond_the_data", file_of("w.safetensors", st_one("[4]", "[0, 16]", 8)), check_st,
     {"its tensors need 16 data bytes but the file holds 8"}},
    {"st_offsets_not_numbers", file_of("w.safetensors", st_one("[1]", R"(["a", "b"])", 0)), load_st,
     {"tensor 'w' has bad data_offsets"}},
    {"st_size_not_shape_times_dtype", file_of("w.safetensors", st_one("[3]", "[0, 8]", 8)), load_st,
     {"tensor 'w' holds 8 bytes but its dtype and shape need 12"}},
    {"st_trailing_bytes", file_of("w.safetensors", st_one("[2]", "[0, 8]", 12)), check_st,
     {"4 bytes of trailing data"}},
    {"st_overlapping_tensors",
     file_of("w.safetensors", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                       std::string(8, '\0'))),
     load_st, {"tensors cover 16 of 8 data bytes"}},
    {"st_metadata_not_strings", file_of("w.safetensors", st_bytes(R"({"__metadata__": {"step": 3}})")), load_st,
     {"__metadata__ value of 'step' is not a string"}},
    {"st_header_nested_100000_deep", file_of("w.safetensors", st_bytes(nested(100000))), load_st,
     {"JSON nested deeper than 64 levels"}},
    {"st_entry_nested_100000_deep", file_of("w.safetensors", st_bytes("{\"w\": " + nested(100000) + "}")), check_st,
     {"JSON nested deeper than 64 levels"}},
    {"st_directory", [](const std::string& dir) { return dir; }, load_st, {"it is a directory"}},
    {"st_symlink_to_dev_zero",
     [](const std::string& dir) {
       fs::create_symlink("/dev/zero", dir + "/zero.safetensors");
       return dir + "/zero.safetensors";
     },
     load_st, {"it is not a regular file"}},
    {"st_missing_file", [](const std::string& dir) { return dir + "/none.safetensors"; }, load_st, {"cannot read"}},
    // IDX
    {"idx_empty", file_of("a.idx", ""), read_idx, {"truncated header: 0 bytes"}},
    {"idx_bad_magic", file_of("a.idx", "\x01\x02\x08\x01" + std::string(4, '\0')), read_idx, {"bad magic 0x01 0x02"}},
    {"idx_unknown_type_code", file_of("a.idx", idx_bytes(0x07, {1}, "x")), read_idx, {"unknown IDX type code 0x07"}},
    {"idx_zero_dims_as_images", idx_pair(3, "images", idx_bytes(data::kIdxUint8, {}, "x")), read_images,
     {"expected 3 dims (N x H x W), got 0"}},
    {"idx_zero_dims_no_data", file_of("a.idx", idx_bytes(data::kIdxUint8, {}, "")), read_idx, {"truncated data"}},
    {"idx_dims_product_overflows", file_of("a.idx", idx_bytes(data::kIdxFloat64, {~0u, ~0u, ~0u}, "")), read_idx,
     {"are too large"}},
    {"idx_truncated_header", file_of("a.idx", idx_bytes(data::kIdxUint8, {2, 2, 2}, "").substr(0, 12)), read_idx,
     {"truncated header: 3 dims need 16 bytes"}},
    {"idx_truncated_data", file_of("a.idx", idx_bytes(data::kIdxUint8, {10}, "abcde")), read_idx,
     {"truncated data", "file has only 5"}},
    {"idx_trailing_data", file_of("a.idx", idx_bytes(data::kIdxUint8, {2}, "abcd")), read_idx, {"2 trailing bytes"}},
    {"idx_gzip_truncated",
     file_of("a.idx.gz", gzip(idx_bytes(data::kIdxUint8, {64}, std::string(64, 'a'))).substr(0, 20)), read_idx,
     {"truncated gzip data"}},
    {"idx_gzip_corrupt",
     file_of("a.idx.gz",
             [] {
               std::string z = gzip(idx_bytes(data::kIdxUint8, {4, 4}, "0123456789abcdef"));
               for (size_t i = 10; i + 8 < z.size(); ++i) z[i] = static_cast<char>(0xff);
               return z;
             }()),
     read_idx, {"gzip data"}},
    {"idx_gzip_trailing_garbage", file_of("a.idx.gz", gzip(idx_bytes(data::kIdxUint8, {2}, "ab")) + "junk"), read_idx,
     {"4 trailing bytes after the gzip stream"}},
    {"idx_gzip_bomb",
     [](const std::string& dir) {
       write_gzip_bomb(dir + "/bomb.idx.gz", idx_bytes(data::kIdxUint8, {10}, ""), uint64_t{512} << 20);
       return dir + "/bomb.idx.gz";
     },
     read_idx, {"decompresses past the 10 data bytes"}},
    {"idx_labels_count_mismatch", idx_pair(2, "labels"), read_images,
     {"holds 2 labels but image file", "holds 3 images"}},
    {"idx_labels_not_uint8", idx_pair(3, "labels", idx_bytes(data::kIdxInt32, {3}, std::string(12, '\0'))), read_images,
     {"expected uint8 (type 0x08), got int32"}},
    {"idx_labels_with_two_dims", idx_pair(3, "labels", idx_bytes(data::kIdxUint8, {3, 1}, "abc")), read_images,
     {"expected 1 dim (N), got 2"}},
    {"idx_missing_file", [](const std::string& dir) { return dir + "/none.idx"; }, read_idx, {"cannot read"}},
    // CIFAR-10
    {"cifar_empty_file", file_of("data_batch_1.bin", ""), read_cifar, {"is empty"}},
    {"cifar_size_not_a_multiple", file_of("data_batch_1.bin", cifar_record(1) + "x"), read_cifar,
     {"size 3074 is not a multiple of 3073"}},
    {"cifar_label_10", file_of("data_batch_1.bin", cifar_record(10)), read_cifar,
     {"record 0 at byte offset 0 has label 10, expected 0..9"}},
    {"cifar_label_255_in_record_1", file_of("data_batch_1.bin", cifar_record(3) + cifar_record(255)), read_cifar,
     {"record 1 at byte offset 3073 has label 255"}},
    {"cifar_missing_file", [](const std::string& dir) { return dir + "/data_batch_9.bin"; }, read_cifar,
     {"cannot read"}},
    {"cifar_directory", [](const std::string& dir) { return dir; }, read_cifar, {"it is a directory"}},
    // token corpora
    {"corpus_meta_missing",
     [](const std::string& dir) {
       write_corpus(dir);
       fs::remove(dir + "/meta.json");
       return dir + "/meta.json";
     },
     open_corpus, {"missing"}},
    {"corpus_meta_not_json",
     [](const std::string& dir) {
       write_corpus(dir);
       write_bytes(dir + "/meta.json", "{\"vocab_size\": 257");
       return dir + "/meta.json";
     },
     open_corpus, {"not valid JSON"}},
    {"corpus_meta_nested_100000_deep",
     [](const std::string& dir) {
       write_corpus(dir);
       write_bytes(dir + "/meta.json", nested(100000));
       return dir + "/meta.json";
     },
     open_corpus, {"not a JSON object"}},
    {"corpus_vocab_size_0", corpus_meta([](nlohmann::json& m) { m["vocab_size"] = 0; }), open_corpus,
     {"vocab_size is missing or not an integer in 1..65536"}},
    {"corpus_vocab_size_70000", corpus_meta([](nlohmann::json& m) { m["vocab_size"] = 70000; }), open_corpus,
     {"vocab_size is missing or not an integer in 1..65536"}},
    {"corpus_eot_outside_the_vocabulary", corpus_meta([](nlohmann::json& m) { m["eot_id"] = 300; }), open_corpus,
     {"eot_id 300 is not a token of the vocabulary (0..256)"}},
    {"corpus_tokenizer_mismatch", corpus_meta({}),
     [](const std::string& dir, const std::string&) { data::open_token_corpus(dir, "gpt2"); },
     {"tokenizer is 'byte' but data.tokenizer is 'gpt2'"}},
    {"corpus_splits_missing", corpus_meta([](nlohmann::json& m) { m.erase("splits"); }), open_corpus,
     {"splits is missing or not an object"}},
    {"corpus_negative_token_count", corpus_meta([](nlohmann::json& m) { m["splits"]["val"]["tokens"] = -4; }),
     open_corpus, {"splits.val.tokens is missing or not a non-negative integer"}},
    {"corpus_token_file_odd_size", corpus_val([](const std::string& b) { return b + "x"; }), open_corpus,
     {"is an odd size"}},
    {"corpus_token_file_truncated", corpus_val([](const std::string& b) { return b.substr(0, b.size() - 2); }),
     open_corpus, {"12 bytes, expected 2 x 7 tokens (truncated?)"}},
    {"corpus_checksum_mismatch",
     corpus_val([](const std::string& b) {
       std::string x = b;
       x[2] = static_cast<char>(x[2] ^ 1);
       return x;
     }),
     open_corpus, {"checksum fnv1a64", "does not match"}},
    {"corpus_id_above_vocab",
     [](const std::string& dir) {
       write_corpus(dir);
       data::write_token_file(dir + "/val.bin", {104, 105, 256, 300, 256});  // 300: outside the byte vocabulary
       nlohmann::json m = nlohmann::json::parse(read_file(dir + "/meta.json"));
       m["splits"]["val"] = {{"documents", 2}, {"tokens", 5}, {"checksum", fnv1a64_hex(read_file(dir + "/val.bin"))}};
       write_bytes(dir + "/meta.json", m.dump());
       return dir + "/val.bin";
     },
     open_corpus, {"token 300 at position 3 is out of range for vocab 257"}},
    {"corpus_train_file_missing",
     [](const std::string& dir) {
       write_corpus(dir);
       fs::remove(dir + "/train.bin");
       return dir + "/train.bin";
     },
     open_corpus, {"cannot open token file"}},
    // multiple-choice JSONL
    {"mc_not_json", file_of("mc.jsonl", "{\"context\": \n"), read_mc, {":1: not a JSON line"}},
    {"mc_not_an_object", file_of("mc.jsonl", "[1, 2, 3]\n"), read_mc, {":1: expected an object"}},
    {"mc_missing_choices", file_of("mc.jsonl", R"({"context": "a", "label": 0})"), read_mc,
     {":1: 'choices' must be a list of strings"}},
    {"mc_one_choice", file_of("mc.jsonl", R"({"context": "a", "choices": ["b"], "label": 0})"), read_mc,
     {":1: 'choices' has 1 entries; at least 2 are needed"}},
    {"mc_label_out_of_range", file_of("mc.jsonl", R"({"context": "a", "choices": ["b", "c"], "label": 2})"), read_mc,
     {":1: label 2 is out of range for 2 choices"}},
    {"mc_label_2_64_minus_1",
     file_of("mc.jsonl", R"({"context": "a", "choices": ["b", "c"], "label": 18446744073709551615})"), read_mc,
     {":1: label 18446744073709551615 is out of range for 2 choices"}},
    {"mc_label_negative", file_of("mc.jsonl", R"({"context": "a", "choices": ["b", "c"], "label": -1})"), read_mc,
     {":1: label -1 is out of range"}},
    {"mc_label_not_an_integer", file_of("mc.jsonl", R"({"context": "a", "choices": ["b", "c"], "label": 0.5})"),
     read_mc, {":1: 'label' must be an integer"}},
    {"mc_context_not_a_string", file_of("mc.jsonl", R"({"context": 7, "choices": ["b", "c"], "label": 0})"), read_mc,
     {":1: 'context' must be a string"}},
    {"mc_choices_nested_100000_deep",
     file_of("mc.jsonl", "{\"context\": \"a\", \"choices\": [\"b\", " + nested(100000) + "], \"label\": 0}\n"), read_mc,
     {":1: 'choices' must be a list of strings, found [[[["}},
    {"mc_bad_second_line", file_of("mc.jsonl", std::string(kGoodItem) + "\n{\"context\": \"x\"}\n"), read_mc,
     {":2: 'choices' must be a list of strings"}},
    {"mc_empty_file", file_of("mc.jsonl", "\n\n"), read_mc, {"no multiple-choice item in the file"}},
    {"mc_missing_file", [](const std::string& dir) { return dir + "/none.jsonl"; }, read_mc, {"cannot open"}},
    // sweep files
    {"sweep_invalid_yaml", file_of("s.yaml", "name: bad\naxes: {train.seed: [0, 1}\n"), load_sweep, {"invalid YAML"}},
    {"sweep_top_level_list", file_of("s.yaml", "- a\n- b\n"), load_sweep, {"expected a mapping at the top level"}},
    {"sweep_unknown_top_level_key", file_of("s.yaml", sweep_text("axis: {}\n")), load_sweep, {"unknown entry 'axis'"}},
    {"sweep_axis_over_an_unknown_key", file_of("s.yaml", sweep_text("  train.lrr: [0.1, 0.2]\n")), load_sweep,
     {"axis 'train.lrr'", "unknown key 'train.lrr'"}},
    {"sweep_axis_value_out_of_range", file_of("s.yaml", sweep_text("  train.lr: [0.1, -1]\n")), load_sweep,
     {"train.lr = -1"}},
    {"sweep_grid_of_a_million_cells",
     file_of("s.yaml",
             [] {
               std::string y = "name: huge\nbase: {}\naxes:\n";
               for (const char* key : {"train.seed", "train.steps", "train.warmup_steps"}) {
                 y += str("  ", key, ": [");
                 for (int v = 1; v <= 100; ++v) y += str(v > 1 ? ", " : "", v);
                 y += "]\n";
               }
               return y;
             }()),
     load_sweep, {"1e+06 cells, more than the 100000"}},
    {"sweep_base_missing", file_of("s.yaml", "name: bad\nbase: no-such-base.yaml\n"), load_sweep,
     {"base: cannot read", "no-such-base.yaml"}},
    {"sweep_extra_grid_without_name", file_of("s.yaml", sweep_text("extra:\n  - set: {train.steps: 3}\n")), load_sweep,
     {"extra: every grid needs a name"}},
    {"sweep_missing_file", [](const std::string& dir) { return dir + "/none.yaml"; }, load_sweep, {"cannot read"}},
    // Hugging Face config.json and checkpoint folders
    {"hf_missing_field", hf_config_file([](nlohmann::json& j) { j.erase("hidden_size"); }), load_hf_config,
     {"missing field 'hidden_size'"}},
    {"hf_wrong_type", hf_config_file([](nlohmann::json& j) { j["hidden_size"] = "32"; }), load_hf_config,
     {"hidden_size = \"32\" is not an integer"}},
    {"hf_negative_size", hf_config_file([](nlohmann::json& j) { j["vocab_size"] = -5; }), load_hf_config,
     {"vocab_size = -5 must be positive"}},
    {"hf_unsupported_model_type", hf_config_file([](nlohmann::json& j) { j["model_type"] = "gpt2"; }), load_hf_config,
     {"model_type = \"gpt2\" is not supported"}},
    {"hf_kv_heads_not_dividing_heads", hf_config_file([](nlohmann::json& j) { j["num_key_value_heads"] = 3; }),
     load_hf_config, {"num_key_value_heads = 3 must divide num_attention_heads = 4"}},
    {"hf_rope_scaling", hf_config_file([](nlohmann::json& j) { j["rope_scaling"] = {{"type", "linear"}}; }),
     load_hf_config, {"rope_scaling", "is not supported"}},
    {"hf_config_not_json", file_of("config.json", "{\"model_type\": "), load_hf_config, {"invalid JSON"}},
    {"hf_config_nested_100000_deep", file_of("config.json", nested(100000)), load_hf_config,
     {"expected a JSON object, got array"}},
    {"hf_no_weights",
     [](const std::string& dir) {
       write_bytes(dir + "/config.json", testutil::kTinyLlamaConfig);
       return dir;
     },
     load_hf, {"neither model.safetensors nor model.safetensors.index.json found"}},
    {"hf_index_not_an_object",
     [](const std::string& dir) {
       write_bytes(dir + "/config.json", testutil::kTinyLlamaConfig);
       return file_of("model.safetensors.index.json", R"({"weight_map": 5})")(dir);
     },
     load_hf, {"expected an object with a \"weight_map\" object"}},
    {"hf_index_lists_a_missing_shard",
     [](const std::string& dir) {
       write_bytes(dir + "/config.json", testutil::kTinyLlamaConfig);
       const char* index = R"({"weight_map": {"lm_head.weight": "shard-1.safetensors"}})";
       return file_of("model.safetensors.index.json", index)(dir);
     },
     load_hf, {"shard 'shard-1.safetensors' (listed for tensor 'lm_head.weight') does not exist"}},
    {"hf_truncated_weights",
     [](const std::string& dir) {
       write_bytes(dir + "/config.json", testutil::kTinyLlamaConfig);
       const std::string bytes = io::safetensors_bytes(tiny_llama_tensors());
       return file_of("model.safetensors", bytes.substr(0, bytes.size() - 100))(dir);
     },
     load_hf, {"its tensors need", "(truncated?)"}},
    {"hf_tensor_of_the_wrong_shape",
     [](const std::string& dir) {
       write_bytes(dir + "/config.json", testutil::kTinyLlamaConfig);
       io::NamedTensors t = tiny_llama_tensors();
       for (auto& [name, x] : t)
         if (name == "model.norm.weight") x = torch::ones({31});
       return file_of("model.safetensors", io::safetensors_bytes(t))(dir);
     },
     load_hf, {"tensor 'model.norm.weight' has shape [31], expected [32]"}},
    // adapter files
    {"adapter_not_safetensors", file_of("a.safetensors", "rank: 8\nalpha: 16\n"), load_adapter, {"header length"}},
    {"adapter_without_metadata",
     [](const std::string& dir) {
       return file_of("a.safetensors", io::safetensors_bytes({{"w", torch::zeros({2})}}))(dir);
     },
     load_adapter, {"not a dynamoe adapter file (no 'dynamoe_adapter' in its metadata)"}},
    {"adapter_unknown_kind",
     adapter_with([](auto& m) { m["dynamoe_adapter"] = "dora"; }),
     load_adapter, {"adapter kind 'dora' is not supported"}},
    {"adapter_rank_not_a_number",
     adapter_with([](auto& m) { m["rank"] = "eight"; }),
     load_adapter, {"bad LoRA hyperparameters in the metadata (rank 'eight'"}},
    {"adapter_rank_2_70",
     adapter_with([](auto& m) { m["rank"] = "1180591620717411303424"; }),
     load_adapter, {"bad LoRA hyperparameters", "1180591620717411303424"}},
    {"adapter_rank_zero",
     adapter_with([](auto& m) { m["rank"] = "0"; }),
     load_adapter, {"lora: rank = 0 must be at least 1"}},
    {"adapter_target_not_in_the_model",
     adapter_with([](auto& m) { m["targets"] = "model.layers.9.mlp.up_proj"; }),
     load_adapter, {"target model.layers.9.mlp.up_proj is not a projection of this model"}},
    {"adapter_without_targets",
     adapter_with([](auto& m) { m["targets"] = ","; }),
     load_adapter, {"the adapter file names no target projection"}},
    {"adapter_missing_tensor",
     adapter_with({}, "lora_B"),
     load_adapter, {"no tensor named 'model.layers.0.mlp.up_proj.adapter.lora_B'"}},
    {"adapter_mixture_not_json",
     adapter_with([](auto& m) {
         m["dynamoe_adapter"] = "lora_mixture";
         m["mixture"] = "{rank: 2";
       }),
     load_adapter, {"the 'mixture' metadata is not valid JSON"}},
    {"adapter_mixture_missing_field",
     adapter_with([](auto& m) {
         m["dynamoe_adapter"] = "lora_mixture";
         m["mixture"] = R"({"alpha": 4, "dropout": 0})";
       }),
     load_adapter, {"lora mixture: field 'rank' is missing"}},
};

/// Runs one file case in a fresh folder: the error names the file, and the folder is unchanged.
void run_file_case(const FileCase& c) {
  SCOPED_TRACE(c.name);
  testutil::TempDir tmp;
  const std::string path = c.make(tmp.str());
  const auto before = snapshot(tmp.str());
  std::vector<std::string> parts = c.parts;
  if (!path.empty()) parts.insert(parts.begin(), path);
  expect_bounded_error<Error>([&] { c.read(tmp.str(), path); }, parts);
  EXPECT_EQ(snapshot(tmp.str()), before) << "the reader wrote into " << tmp.str();
}

/// The shell-quoted `s`.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

/// Peak RSS in kB of the largest child process waited for so far.
long children_peak_rss_kb() {
  rusage u{};
  ::getrusage(RUSAGE_CHILDREN, &u);
  return u.ru_maxrss;
}

}  // namespace

TEST(BadInputs, TablesHoldEnoughCases) {
  EXPECT_GE(kConfigCases.size(), 60u);
  EXPECT_GE(kCliCases.size(), 8u);
  EXPECT_GE(kFileCases.size(), 40u);
  std::set<std::string> names;
  for (const auto& c : kConfigCases) EXPECT_TRUE(names.insert(c.name).second) << "two cases are called " << c.name;
  for (const auto& c : kFileCases) EXPECT_TRUE(names.insert(c.name).second) << "two cases are called " << c.name;
}

TEST(BadInputs, ConfigsAreOneLineErrorsNamingTheKey) {
  for (const ConfigCase& c : kConfigCases) {
    SCOPED_TRACE(c.name);
    expect_bounded_error<ConfigError>([&] { config::parse_config(c.yaml, "bad.yaml", c.overrides); }, c.parts);
  }
}

TEST(BadInputs, ConfigsThroughTheCliWriteNothing) {
  testutil::TempDir base;
  // What starting the CLI costs: its time and memory before any config is read.
  auto t0 = std::chrono::steady_clock::now();
  const testutil::CommandResult version =
      testutil::run_command("cd " + quoted(base.str()) + " && " + testutil::cli() + " --version");
  const double startup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(version.exit_code, 0) << version.output;
  const long startup_peak_kb = children_peak_rss_kb();
  for (const std::string& name : kCliCases) {
    SCOPED_TRACE(name);
    const auto it =
        std::find_if(kConfigCases.begin(), kConfigCases.end(), [&](const ConfigCase& c) { return c.name == name; });
    ASSERT_NE(it, kConfigCases.end());
    testutil::TempDir tmp;
    const std::string file = tmp / "bad.yaml", runs = tmp / "runs";
    write_bytes(file, it->yaml);
    std::string cmd = "cd " + quoted(tmp.str()) + " && " + testutil::cli() + " train --config " + quoted(file) +
                      " --set " + quoted("train.runs_dir=" + runs) + " --name bad";
    for (const std::string& o : it->overrides) cmd += " --set " + quoted(o);
    const auto before = snapshot(tmp.str());
    t0 = std::chrono::steady_clock::now();
    const testutil::CommandResult r = testutil::run_command(cmd + " </dev/null");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(r.output.rfind("dynamoe: error: config: ", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "not one line: " << r.output;
    for (const std::string& p : it->parts)
      EXPECT_NE(r.output.find(p), std::string::npos) << "'" << p << "' not in: " << r.output;
    EXPECT_FALSE(fs::exists(runs)) << runs << " was created";
    EXPECT_EQ(snapshot(tmp.str()), before) << "dynamoe train wrote into " << tmp.str();
    EXPECT_LT(seconds, startup_s + kMaxSeconds) << "took " << seconds << " s (start-up " << startup_s << " s)";
  }
  EXPECT_LT(children_peak_rss_kb(), startup_peak_kb + kMaxGrowthKb)
      << "a CLI run peaked at " << children_peak_rss_kb() << " kB (start-up " << startup_peak_kb << " kB)";
}

TEST(BadInputs, CorruptFilesAreOneLineErrorsNamingTheFile) {
  for (const FileCase& c : kFileCases) run_file_case(c);
}

namespace {

// ---------------------------------------------------------------------------------------------
// Former defects: inputs this file found handled badly on 2026-12-07 (what happened is in each
// comment), each now a one-line error like the cases above.

/// load_config(<dir>/bad.yaml) of `yaml`: the error must name the key (range errors do not name the file).
FileCase config_file_case(const std::string& name, const std::string& yaml, const std::vector<std::string>& parts) {
  return {name,
          [yaml](const std::string& dir) {
            write_bytes(dir + "/bad.yaml", yaml);
            return std::string();
          },
          [](const std::string& dir, const std::string&) { config::load_config(dir + "/bad.yaml"); }, parts};
}

/// A Hugging Face folder with `config` and a two-number model.safetensors.
std::function<std::string(const std::string&)> hf_with_tiny_weights(const std::string& config) {
  return [config](const std::string& dir) {
    write_bytes(dir + "/config.json", config);
    write_bytes(dir + "/model.safetensors", io::safetensors_bytes({{"x", torch::zeros({2})}}));
    return dir;
  };
}

const std::vector<FileCase> kFormerDefects = {
    // The uint64 element count wrapped to 0 and passed; at::empty then threw a c10::Error with a
    // multi-line backtrace.
    {"st_shape_product_wraps_to_zero", file_of("w.safetensors", st_one("[4294967296, 4294967296]", "[0, 0]", 0)),
     load_st, {"tensor 'w'", "too many elements"}},
    // Crashed (SIGSEGV): the index was parsed without a depth limit and the error message dumped
    // the 100,000-deep value recursively.
    {"hf_index_entry_nested_100000_deep",
     [](const std::string& dir) {
       write_bytes(dir + "/config.json", testutil::kTinyLlamaConfig);
       return file_of("model.safetensors.index.json", "{\"weight_map\": {\"x\": " + nested(100000) + "}}")(dir);
     },
     load_hf, {"nested deeper than"}},
    // Took 5 to 8 s and 2.1 GB: the model was allocated before the weight files were compared
    // with config.json.
    {"hf_config_declares_a_big_model_with_tiny_weights",
     hf_with_tiny_weights(R"({"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,)"
                          R"( "num_hidden_layers": 8, "num_attention_heads": 16, "vocab_size": 32000})"),
     load_hf, {"config.json describes", "but the weight files hold"}},
    // Threw LibTorch's allocator error (4,194,304,000,000 bytes) naming neither folder nor field.
    {"hf_config_declares_a_huge_model",
     hf_with_tiny_weights(R"({"model_type": "llama", "hidden_size": 1048576, "intermediate_size": 1048576,)"
                          R"( "num_hidden_layers": 8, "num_attention_heads": 16, "vocab_size": 1000000})"),
     load_hf, {"config.json describes", "GB in fp32, more than"}},
    // Accepted (2 images of height 0); training then failed naming neither file nor dimension.
    {"idx_image_height_zero",
     [](const std::string& dir) {
       write_bytes(dir + "/images", idx_bytes(data::kIdxUint8, {2, 0, 8}, ""));
       write_bytes(dir + "/labels", idx_bytes(data::kIdxUint8, {2}, "\x01\x02"));
       return dir + "/images";
     },
     read_images, {"have no pixels"}},
    // Accepted: the second value silently won.
    config_file_case("config_duplicate_key", "train:\n  lr: 0.1\n  lr: 5\n", {"train.lr", "given twice"}),
    // Accepted: model.hidden had no upper bound (a 314M-parameter MLP trained at 8.8 GB RSS).
    config_file_case("config_hidden_width_above_2_20", "model: {hidden: [2097152]}\n", {"model.hidden", "out of range"}),
    // Took 2.2 s (30,000 entries: 20 s) with a 30 KB message: the whole list was formatted once per entry.
    config_file_case("config_10000_hidden_layers_then_a_zero",
                     [] {
                       std::string list;
                       for (int i = 0; i < 10000; ++i) list += "1, ";
                       return "model: {hidden: [" + list + "0]}\n";
                     }(),
                     {"model.hidden", "10001 entries"}),
    // Took 5.1 s: the edit distance to every known key is quadratic in the key's length, and the
    // message held the whole key.
    config_file_case("config_1_MB_unknown_key", "? " + std::string(1 << 20, 'k') + "\n: 1\n",
                     {"unknown key", "(1048576 characters)"}),
};

}  // namespace

TEST(BadInputs, FormerDefectsAreOneLineErrors) {
  for (const FileCase& c : kFormerDefects) run_file_case(c);
}
