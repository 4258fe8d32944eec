#include "dynamoe/models/hf/llama_config.h"

#include <nlohmann/json.hpp>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/json_text.h"

namespace dynamoe::models::hf {
namespace {

using nlohmann::json;

/// Reads the fields of one config.json object with one-line errors naming `where`.
class Fields {
 public:
  Fields(const json& doc, std::string where) : doc_(doc), where_(std::move(where)) {}

  /// True when `key` is present and not null.
  bool has(const char* key) const { return doc_.contains(key) && !doc_[key].is_null(); }

  int64_t integer(const char* key) const {
    const json& v = doc_[key];
    if (!v.is_number_integer()) fail(key, v, "is not an integer");
    return v.get<int64_t>();
  }
  double number(const char* key) const {
    const json& v = doc_[key];
    if (!v.is_number()) fail(key, v, "is not a number");
    return v.get<double>();
  }
  bool boolean(const char* key) const {
    const json& v = doc_[key];
    if (!v.is_boolean()) fail(key, v, "is not true or false");
    return v.get<bool>();
  }
  std::string string(const char* key) const {
    const json& v = doc_[key];
    if (!v.is_string()) fail(key, v, "is not a string");
    return v.get<std::string>();
  }
  int64_t required_integer(const char* key) const {
    if (!has(key)) throw ConfigError(str(where_, ": missing field '", key, "'"));
    return integer(key);
  }
  [[noreturn]] void fail(const char* key, const json& v, const std::string& problem) const {
    throw ConfigError(str(where_, ": ", key, " = ", json_excerpt(v), " ", problem));
  }

 private:
  const json& doc_;
  std::string where_;
};

}  // namespace

void LlamaConfig::validate(const std::string& where) const {
  auto positive = [&](const char* field, int64_t v) {
    if (v <= 0) throw ConfigError(str(where, ": ", field, " = ", v, " must be positive"));
  };
  if (model_type != "llama" && model_type != "mistral")
    throw ConfigError(str(where, ": model_type = \"", model_type, "\" is not supported (supported: llama, mistral)"));
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  positive("vocab_size", vocab_size);
  positive("max_position_embeddings", max_position_embeddings);
  if (sliding_window < 0) throw ConfigError(str(where, ": sliding_window = ", sliding_window, " must be positive or null"));
  if (num_attention_heads % num_key_value_heads != 0)
    throw ConfigError(str(where, ": num_key_value_heads = ", num_key_value_heads,
                          " must divide num_attention_heads = ", num_attention_heads));
  if (head_dim % 2 != 0) throw ConfigError(str(where, ": head_dim = ", head_dim, " must be even (RoPE rotates pairs)"));
  if (!(rms_norm_eps > 0)) throw ConfigError(str(where, ": rms_norm_eps = ", rms_norm_eps, " must be positive"));
  if (!(rope_theta > 0)) throw ConfigError(str(where, ": rope_theta = ", rope_theta, " must be positive"));
  if (hidden_act != "silu")
    throw ConfigError(str(where, ": hidden_act = \"", hidden_act, "\" is not supported (only \"silu\")"));
}

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& where) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::exception& e) {
    throw ConfigError(str(where, ": invalid JSON: ", e.what()));
  }
  if (!doc.is_object()) throw ConfigError(str(where, ": expected a JSON object, got ", doc.type_name()));
  const Fields f(doc, where);
  LlamaConfig c;
  if (!f.has("model_type")) throw ConfigError(str(where, ": missing field 'model_type' (supported: llama, mistral)"));
  c.model_type = f.string("model_type");
  if (c.model_type != "llama" && c.model_type != "mistral")
    f.fail("model_type", doc["model_type"], "is not supported (supported: llama, mistral)");
  const bool mistral = c.model_type == "mistral";

  c.hidden_size = f.required_integer("hidden_size");
  c.intermediate_size = f.required_integer("intermediate_size");
  c.num_hidden_layers = f.required_integer("num_hidden_layers");
  c.num_attention_heads = f.required_integer("num_attention_heads");
  c.vocab_size = f.required_integer("vocab_size");
  // Defaults as in transformers' LlamaConfig / MistralConfig.
  c.num_key_value_heads = f.has("num_key_value_heads") ? f.integer("num_key_value_heads")
                          : mistral                    ? 8
                                                       : c.num_attention_heads;
  if (f.has("head_dim")) {
    c.head_dim = f.integer("head_dim");
  } else {
    if (c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads != 0)
      throw ConfigError(str(where, ": hidden_size = ", c.hidden_size, " must divide by num_attention_heads = ",
                            c.num_attention_heads, " when head_dim is not given"));
    c.head_dim = c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
  }
  c.max_position_embeddings = f.has("max_position_embeddings") ? f.integer("max_position_embeddings")
                              : mistral                        ? 4096 * 32
                                                               : 2048;
  if (mistral) {
    if (!doc.contains("sliding_window")) {
      c.sliding_window = 4096;
    } else if (f.has("sliding_window")) {
      c.sliding_window = f.integer("sliding_window");
      if (c.sliding_window <= 0) f.fail("sliding_window", doc["sliding_window"], "must be positive or null");
    }
  }
  if (f.has("rms_norm_eps")) c.rms_norm_eps = f.number("rms_norm_eps");
  if (f.has("rope_theta")) c.rope_theta = f.number("rope_theta");
  if (f.has("tie_word_embeddings")) c.tie_word_embeddings = f.boolean("tie_word_embeddings");
  if (f.has("attention_bias")) c.attention_bias = f.boolean("attention_bias");
  if (f.has("mlp_bias")) c.mlp_bias = f.boolean("mlp_bias");
  if (f.has("hidden_act")) c.hidden_act = f.string("hidden_act");
  if (c.hidden_act != "silu") f.fail("hidden_act", doc["hidden_act"], "is not supported (only \"silu\")");
  if (f.has("rope_scaling"))
    f.fail("rope_scaling", doc["rope_scaling"], "is not supported (only null: plain RoPE)");
  c.validate(where);
  return c;
}

LlamaConfig load_llama_config(const std::string& path) { return parse_llama_config(read_file(path), path); }

}  // namespace dynamoe::models::hf
