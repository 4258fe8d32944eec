#include "dynamoe/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>

#include "dynamoe/moe/gate.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/moe/schedule.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::config {

namespace {

/// Binds the fields of a kind's options struct to keys under `prefix` ("moe.router.").
class SchemaBinder : public OptionVisitor {
 public:
  /// `section` tags the fields for the reference ("moe.router.kind = top_k").
  SchemaBinder(Schema& s, std::string prefix, std::string section)
      : s_(s), prefix_(std::move(prefix)), section_(std::move(section)) {}
  void flag(const std::string& n, bool& v, const std::string& doc) override {
    s_.add_bool(prefix_ + n, &v, doc);
    s_.tag_last(section_);
  }
  void integer(const std::string& n, int64_t& v, const std::string& doc, std::optional<double> min,
               std::optional<double> max) override {
    s_.add_int(prefix_ + n, &v, doc, min, max);
    s_.tag_last(section_);
  }
  void real(const std::string& n, double& v, const std::string& doc, std::optional<double> min, std::optional<double> max,
            bool min_exclusive) override {
    s_.add_float(prefix_ + n, &v, doc, min, max, min_exclusive);
    s_.tag_last(section_);
  }
  void text(const std::string& n, std::string& v, const std::string& doc, std::vector<std::string> choices) override {
    s_.add_string(prefix_ + n, &v, doc, std::move(choices));
    s_.tag_last(section_);
  }

 private:
  Schema& s_;
  std::string prefix_, section_;
};

/// The option names of a kind, for hints ("k, normalize, temperature").
std::string option_names(KindOptions& o) {
  Schema tmp;
  SchemaBinder b(tmp, "", "options");
  o.visit(b);
  std::string out;
  for (const auto& f : tmp.fields()) out += (out.empty() ? "" : ", ") + f.key;
  return out.empty() ? "none" : out;
}

/// The kind key of a group and the options of its current kind under the group's prefix.
void add_kind(Schema& s, const std::string& group, const std::string& kind_key, KindChoice& choice,
              const std::string& what, std::vector<std::string> names, const std::string& doc) {
  s.add_string(group + "." + kind_key, &choice.kind_for_schema(), doc, std::move(names));
  SchemaBinder binder(s, group + ".", group + "." + kind_key + " = " + choice.kind());
  choice.options().visit(binder);
  s.add_group_hint(group + ".", str(what, " '", choice.kind(), "' has the options: ", option_names(choice.options())));
}

/// Keys of the flat moe group before it was grouped, and where each one went.
const std::vector<std::pair<std::string, std::string>>& renamed_keys() {
  static const std::vector<std::pair<std::string, std::string>> r = {
      {"moe.gate", "moe.gate.kind"}, {"moe.gate_bias", "moe.gate.bias"}, {"moe.gate_rank", "moe.gate.rank"},
      {"moe.gate_mlp_mult", "moe.gate.mult"}, {"moe.gate_residual", "moe.gate.residual"},
      {"moe.router", "moe.router.kind"}, {"moe.temperature", "moe.router.temperature"}, {"moe.k", "moe.router.k"},
      {"moe.top_k_normalize", "moe.router.normalize"}, {"moe.top_p", "moe.router.p"},
      {"moe.top_p_min_k", "moe.router.min_k"}, {"moe.top_p_max_k", "moe.router.max_k"},
      {"moe.top_p_normalize", "moe.router.normalize"}, {"moe.theta", "moe.router.theta"},
      {"moe.threshold_normalize", "moe.router.normalize"}, {"moe.dynamoe_temperature", "moe.router.temperature"},
      {"moe.dynamoe_sigma", "moe.router.sigma"}, {"moe.dynamoe_tau", "moe.router.tau"},
      {"moe.tsallis_q", "moe.router.q (the router) and moe.losses.tsallis_q (the loss)"},
      {"moe.tsallis_top_p", "moe.router.p"}, {"moe.tsallis_threshold", "moe.router.threshold"},
      {"moe.tsallis_eps", "moe.router.eps (the router) and moe.losses.tsallis_eps (the loss)"},
      {"moe.tsallis_keep_top_k", "moe.router.keep_top_k"}, {"moe.expert_choice_capacity", "moe.router.capacity"},
      {"moe.expert", "moe.experts.kind"}, {"moe.expert_hidden", "moe.experts.hidden"},
      {"moe.expert_activation", "moe.experts.activation"}, {"moe.n_zero", "moe.experts.n_zero"},
      {"moe.n_copy", "moe.experts.n_copy"}, {"moe.n_constant", "moe.experts.n_constant"},
      {"moe.n_shared", "moe.experts.n_shared"}, {"moe.schedule", "moe.layers.schedule"},
      {"moe.e_min", "moe.layers.e_min"}, {"moe.e_max", "moe.layers.e_max"},
      {"moe.total_experts", "moe.layers.total_experts"}, {"moe.wave_frequency", "moe.layers.frequency"},
      {"moe.schedule_k_max", "moe.layers.k_max"}, {"moe.k_max_min", "moe.layers.k_max_min"},
      {"moe.k_max_max", "moe.layers.k_max_max"}, {"moe.load_balance", "moe.losses.load_balance"},
      {"moe.z_loss", "moe.losses.z_loss"}, {"moe.entropy", "moe.losses.entropy"}, {"moe.tsallis", "moe.losses.tsallis"},
      {"train.schedule", "train.lr_schedule"},
  };
  return r;
}

/// The integer options of a kind's options struct, by name.
class IntegerOptions : public OptionVisitor {
 public:
  std::map<std::string, int64_t> values;
  void flag(const std::string&, bool&, const std::string&) override {}
  void integer(const std::string& name, int64_t& v, const std::string&, std::optional<double>,
               std::optional<double>) override {
    values[name] = v;
  }
  void real(const std::string&, double&, const std::string&, std::optional<double>, std::optional<double>,
            bool) override {}
  void text(const std::string&, std::string&, const std::string&, std::vector<std::string>) override {}
};

/// Expert counts of the router that no layer can honour are errors, not silent clamps: k or
/// min_k above the largest layer's experts, and min_k above max_k.
void check_router_counts(MoEConfig& moe) {
  IntegerOptions o;
  moe.router.options().visit(o);
  const std::string& kind = moe.router.kind();
  const auto get = [&](const char* name) { return o.values.count(name) ? o.values.at(name) : int64_t{-1}; };
  const int64_t k = get("k"), min_k = get("min_k"), max_k = get("max_k"), largest = moe.layers.e_max;
  if (min_k >= 0 && max_k > 0 && min_k > max_k)
    throw ConfigError(str("config: moe.router.min_k = ", min_k, " is above moe.router.max_k = ", max_k,
                          " (router ", kind, ")"));
  if (moe.layers.total_experts > 0) return;  // layer sizes are rescaled: the largest is not e_max
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"k", k}, {"min_k", min_k}})
    if (v > largest)
      throw ConfigError(str("config: moe.router.", name, " = ", v, " is more than the ", largest,
                            " experts of the largest layer (moe.layers.e_max; router ", kind, ")"));
}

void add_moe_fields(Schema& s, MoEConfig& moe) {
  add_kind(s, "moe.gate", "kind", moe.gate, "gate", moe::gate_names(), "gate: x -> logits");
  s.add_bool("moe.gate.residual", &moe.gate_residual, "gating residual z_l = gate(x) + W_map z_{l-1} (MoE++)");
  add_kind(s, "moe.router", "kind", moe.router, "router", moe::router_names(),
           "router: logits -> active experts and weights (its options follow as moe.router.*)");
  s.add_string("moe.experts.kind", &moe.experts.kind, "kind of the computing experts", {"linear", "ffn", "swiglu"});
  s.add_int("moe.experts.hidden", &moe.experts.hidden, "hidden width F of ffn / swiglu experts", 1, 1 << 20);
  s.add_string("moe.experts.activation", &moe.experts.activation, "ffn expert activation", {"relu", "gelu", "silu", "tanh"});
  s.add_int("moe.experts.n_zero", &moe.experts.n_zero, "zero experts per layer (MoE++), part of E_l", 0, 1 << 16);
  s.add_int("moe.experts.n_copy", &moe.experts.n_copy, "copy experts per layer (MoE++), part of E_l", 0, 1 << 16);
  s.add_int("moe.experts.n_constant", &moe.experts.n_constant, "constant experts per layer (MoE++), part of E_l", 0, 1 << 16);
  s.add_int("moe.experts.n_shared", &moe.experts.n_shared, "shared experts per layer (weight 1 for every token)", 0, 1 << 16);
  add_kind(s, "moe.layers", "schedule", moe.layers.schedule, "schedule", moe::schedule_names(),
           "experts per layer across depth");
  s.add_int("moe.layers.e_min", &moe.layers.e_min, "schedule: fewest experts in a layer", 1, 1 << 16);
  s.add_int("moe.layers.e_max", &moe.layers.e_max, "schedule: most experts in a layer", 1, 1 << 16);
  s.add_int("moe.layers.total_experts", &moe.layers.total_experts,
            "schedule: rescale so the layers hold this many in all (0: off)", 0, 1 << 20);
  s.add_bool("moe.layers.k_max", &moe.layers.k_max, "the schedule (same shape) also sets each layer's k_max");
  s.add_int("moe.layers.k_max_min", &moe.layers.k_max_min, "layers.k_max: smallest k_max", 1, 1 << 16);
  s.add_int("moe.layers.k_max_max", &moe.layers.k_max_max, "layers.k_max: largest k_max", 1, 1 << 16);
  s.add_float("moe.losses.load_balance", &moe.losses.load_balance, "coefficient of the Switch load-balance loss", 0.0);
  s.add_float("moe.losses.z_loss", &moe.losses.z_loss, "coefficient of the ST-MoE router z-loss", 0.0);
  s.add_float("moe.losses.entropy", &moe.losses.entropy,
              "coefficient of the routing-entropy loss (1e-4 in Huang et al., docs/methods.md section 4.3)", 0.0);
  s.add_float("moe.losses.tsallis", &moe.losses.tsallis, "multiplier of the DynMoLE Tsallis loss (1: as written)", 0.0);
  s.add_float("moe.losses.tsallis_q", &moe.losses.tsallis_q, "Tsallis loss: entropic index q", 0.0);
  s.add_float("moe.losses.tsallis_eps", &moe.losses.tsallis_eps, "Tsallis loss: eps in (p + eps)^q", 0.0);
  s.add_float("moe.capacity_factor", &moe.capacity_factor, "token-choice capacity factor (0: dropless)", 0.0);
  s.add_bool("moe.bias_balancing", &moe.bias_balancing, "aux-loss-free bias balancing (DeepSeek-V3)");
  s.add_float("moe.bias_gamma", &moe.bias_gamma, "bias balancing step gamma", 0.0);
  s.add_string("moe.kernel", &moe.kernel, "expert computation: grouped (fast path) or loop (per-expert autograd reference)",
               {"grouped", "loop"});
  s.add_string("moe.precision", &moe.precision, "expert GEMMs: fp32, or bf16 mixed precision (fp32 masters and router)",
               {"fp32", "bf16"});
  s.add_int("moe.expert_parallel", &moe.expert_parallel,
            "several processes: split each layer's computing experts over this many (1: every process holds all)", 1, 4096);
  for (const auto& [old_key, new_key] : renamed_keys()) s.add_renamed(old_key, new_key);
}

}  // namespace

MoEConfig::MoEConfig()
    : gate(moe::gate_choice("linear")), router(moe::router_choice("top_k")) {
  layers.schedule = moe::schedule_choice("uniform");
}

Schema Config::schema() {
  Schema s;
  // model
  s.add_string("model.kind", &model.kind, "model to build", {"mlp", "cnn", "moe_mlp", "moe_cnn", "lm", "finetune"});
  s.add_int_list("model.hidden", &model.hidden, "MLP hidden layer widths", 1, 1 << 20);
  s.add_int_list("model.channels", &model.channels,
                 "CNN channels: one 3x3 conv (padding 1) + 2x2 max-pool per entry", 1, 1 << 16);
  s.add_int("model.cnn_fc", &model.cnn_fc, "CNN width of the fully connected layer", 1, 1 << 20);
  s.add_string("model.activation", &model.activation, "hidden activation",
               {"relu", "gelu", "silu", "tanh"});
  s.add_string("model.norm", &model.norm, "normalisation after each hidden layer",
               {"none", "layernorm", "batchnorm"});
  s.add_float("model.dropout", &model.dropout, "dropout probability after hidden activations", 0.0, 0.95);
  s.add_int("model.d_model", &model.d_model, "MoE models: width of the residual stream", 1, 1 << 20);
  s.add_int("model.moe_layers", &model.moe_layers, "MoE-MLP: number of MoE blocks", 1, 64);
  add_moe_fields(s, moe);
  // lm
  s.add_int("lm.layers", &lm.layers, "language model: transformer blocks", 1, 256);
  s.add_int("lm.heads", &lm.heads, "language model: attention heads (model.d_model must divide by it)", 1, 1024);
  s.add_int("lm.context", &lm.context, "language model: tokens per training sequence, longest prompt", 2, 1 << 16);
  s.add_int("lm.d_ff", &lm.d_ff, "language model: dense FFN hidden width (0: 4 * model.d_model)", 0, 1 << 20);
  s.add_string("lm.positions", &lm.positions, "language model: position encoding", {"rope", "learned"});
  s.add_float("lm.rope_base", &lm.rope_base, "RoPE base (theta)", 1.0);
  s.add_string("lm.attention_activation", &lm.attention_activation,
               "active-attention sigma on V (QGMoE); identity is standard attention",
               {"identity", "relu", "gelu", "silu", "tanh", "sigmoid"});
  s.add_int("lm.moe_every", &lm.moe_every, "MoE feed-forward in every block (1), every other block (2) or none (0)", 0, 2);
  s.add_bool("lm.tie_embeddings", &lm.tie_embeddings, "output projection shares the token embedding matrix");
  s.add_bool("lm.allow_noncausal_router", &lm.allow_noncausal_router,
             "permit a router whose choice depends on other (future) tokens, e.g. expert_choice");
  s.add_int("lm.eval_tokens", &lm.eval_tokens, "val tokens scored per evaluation (0: the whole val split)", 0);
  // data
  s.add_string("data.dataset", &data.dataset, "dataset name (fetched ones live in data.dir/<name>)",
               {"mnist", "fashion-mnist", "cifar10", "idx", "python-docs", "kernel-docs", "jargon"});
  s.add_string("data.tokenizer", &data.tokenizer, "text corpora: tokenizer of the token files", {"gpt2", "byte"});
  s.add_string("data.dir", &data.dir, "root folder of fetched datasets");
  s.add_string("data.path", &data.path,
               "explicit dataset folder (IDX: the 4 standard files; cifar10: the *_batch_*.bin files)");
  s.add_int("data.train_limit", &data.train_limit, "use only the first N training examples (0: all)", 0);
  s.add_int("data.test_limit", &data.test_limit, "use only the first N test examples (0: all)", 0);
  // train
  s.add_string("train.optimizer", &train.optimizer, "optimizer", {"adamw", "sgd"});
  s.add_float("train.lr", &train.lr, "peak learning rate", 0.0, 10.0, true);
  s.add_float("train.weight_decay", &train.weight_decay, "decoupled (AdamW) / L2 (SGD) weight decay", 0.0, 10.0);
  s.add_float("train.beta1", &train.beta1, "AdamW beta1", 0.0, 0.999999);
  s.add_float("train.beta2", &train.beta2, "AdamW beta2", 0.0, 0.999999);
  s.add_float("train.eps", &train.eps, "AdamW epsilon", 0.0, 1.0, true);
  s.add_float("train.momentum", &train.momentum, "SGD momentum", 0.0, 0.999999);
  s.add_bool("train.nesterov", &train.nesterov, "SGD Nesterov momentum");
  s.add_string("train.lr_schedule", &train.lr_schedule, "learning-rate schedule after linear warmup",
               {"constant", "cosine"});
  s.add_int("train.warmup_steps", &train.warmup_steps, "linear warmup steps", 0);
  s.add_float("train.min_lr_ratio", &train.min_lr_ratio, "cosine floor as a fraction of lr", 0.0, 1.0);
  s.add_int("train.batch_size", &train.batch_size, "examples per optimizer step", 1, 1 << 20);
  s.add_int("train.epochs", &train.epochs, "passes over the training set (used when steps = 0)", 1);
  s.add_int("train.steps", &train.steps, "total optimizer steps (0: from epochs)", 0);
  s.add_float("train.grad_clip", &train.grad_clip, "max global gradient L2 norm (0: off)", 0.0);
  s.add_int("train.eval_every", &train.eval_every, "evaluate every N steps (0: at each epoch end)", 0);
  s.add_int("train.log_every", &train.log_every, "progress line every N steps", 1);
  s.add_int("train.checkpoint_every", &train.checkpoint_every,
            "checkpoint every N steps (0: at each evaluation)", 0);
  s.add_int("train.keep_checkpoints", &train.keep_checkpoints, "recent checkpoints kept on disk", 1);
  s.add_int("train.gradnoise_every", &train.gradnoise_every,
            "record per-layer gradient noise every N steps (0: off); see `dynamoe gradnoise`", 0);
  s.add_int("train.gradnoise_batches", &train.gradnoise_batches, "mini-batches per gradient-noise measurement", 2);
  s.add_int("train.seed", &train.seed, "seed of every random choice (init, shuffling, dropout)", 0);
  s.add_int("train.threads", &train.threads, "intra-op threads (0: all cores)", 0, 1024);
  s.add_string("train.runs_dir", &train.runs_dir, "folder that holds run folders");
  // dist
  s.add_float("dist.timeout_s", &dist.timeout_s,
              "several processes: a collective waiting longer than this fails, naming the lost rank", 0.0, 86400.0, true);
  s.add_float("dist.connect_timeout_s", &dist.connect_timeout_s,
              "several processes: how long each waits for every rank to join", 0.0, 86400.0, true);
  // finetune
  s.add_string("finetune.base", &finetune.base, "fine-tuning: the pretrained dynamoe LM (run or checkpoint folder)");
  s.add_string("finetune.adapter", &finetune.adapter, "fine-tuning: adapter kind (docs/finetune.md)",
               {"lora", "mola", "mixlora", "dynmole"});
  s.add_string("finetune.targets", &finetune.targets,
               "fine-tuning: regular expression over projection paths (blocks.0.fc1, blocks.0.attn.qkv, ...)");
  s.add_int("finetune.rank", &finetune.rank, "fine-tuning: LoRA rank (of each expert in a mixture)", 1, 1 << 16);
  s.add_float("finetune.alpha", &finetune.alpha, "fine-tuning: LoRA alpha (scale alpha / rank)", 0.0, 1e6, true);
  s.add_float("finetune.dropout", &finetune.dropout, "fine-tuning: LoRA dropout", 0.0, 0.95);
  s.add_int("finetune.experts", &finetune.experts, "fine-tuning: LoRA experts per adapted projection (mixtures)", 2, 256);
  s.add_string("finetune.domains", &finetune.domains,
               "fine-tuning: comma-separated text corpora, an equal batch share each ('': data.dataset)");
  s.add_int("finetune.mc_items", &finetune.mc_items, "fine-tuning: multiple-choice items per domain (0: none)", 0, 1 << 20);
  s.add_int("finetune.mc_choices", &finetune.mc_choices, "fine-tuning: choices per multiple-choice item", 2, 64);
  s.add_int("finetune.mc_context", &finetune.mc_context, "fine-tuning: context tokens of a multiple-choice item", 1, 1 << 20);
  s.add_int("finetune.mc_continuation", &finetune.mc_continuation, "fine-tuning: tokens of each choice", 1, 1 << 20);
  return s;
}

void Config::validate() {
  Schema s = schema();
  s.check_ranges();
  if (model.kind == "mlp" && model.hidden.empty())
    throw ConfigError("config: model.hidden = [] is out of range (an MLP needs at least one hidden layer)");
  const MoEConfig::Layers& ml = moe.layers;
  if (ml.e_min > ml.e_max)
    throw ConfigError(str("config: moe.layers.e_min = ", ml.e_min, " is out of range (must be <= moe.layers.e_max = ",
                          ml.e_max, ")"));
  if (ml.k_max_min > ml.k_max_max)
    throw ConfigError(str("config: moe.layers.k_max_min = ", ml.k_max_min,
                          " is out of range (must be <= moe.layers.k_max_max = ", ml.k_max_max, ")"));
  const moe::RouterTraits router = moe::router_traits(moe.router.kind());
  check_router_counts(moe);
  const bool has_moe = model.kind == "moe_mlp" || model.kind == "moe_cnn" || (model.kind == "lm" && lm.moe_every > 0);
  if (has_moe && router.needs_token_ids && model.kind != "lm")
    throw ConfigError(str("config: moe.router.kind = '", moe.router.kind(), "' routes by token id, which only a ",
                          "language model has (model.kind = '", model.kind, "')"));
  if (moe.precision == "bf16" && moe.kernel != "grouped")
    throw ConfigError(str("config: moe.precision = 'bf16' needs moe.kernel = 'grouped' (got '", moe.kernel, "')"));
  if (model.kind == "cnn" && model.channels.empty())
    throw ConfigError("config: model.channels = [] is out of range (a CNN needs at least one conv)");
  if ((data.dataset == "idx" || data.dataset == "cifar10") && data.path.empty())
    throw ConfigError(str("config: data.path = '' must name a folder when data.dataset = '",
                          data.dataset, "'"));
  const bool text = data.dataset == "python-docs" || data.dataset == "kernel-docs" || data.dataset == "jargon";
  const bool lm_kind = model.kind == "lm" || model.kind == "finetune";
  if (lm_kind != text)
    throw ConfigError(str("config: model.kind = '", model.kind, "' does not fit data.dataset = '", data.dataset,
                          "' (lm and finetune train on a text corpus; the other models on images)"));
  if (model.kind == "finetune") {
    if (finetune.base.empty())
      throw ConfigError("config: finetune.base = '' must name the pretrained language model's run or checkpoint folder");
    static const std::vector<std::string> corpora = {"python-docs", "kernel-docs", "jargon"};
    size_t start = 0;
    const std::string& d = finetune.domains;
    while (start <= d.size() && !d.empty()) {
      const size_t comma = std::min(d.find(',', start), d.size());
      const std::string name = d.substr(start, comma - start);
      if (std::find(corpora.begin(), corpora.end(), name) == corpora.end())
        throw ConfigError(str("config: finetune.domains = '", d, "': '", name,
                              "' is not a text corpus (python-docs, kernel-docs, jargon)"));
      start = comma + 1;
    }
    if (finetune.mc_context + finetune.mc_continuation > lm.context)
      throw ConfigError(str("config: finetune.mc_context + finetune.mc_continuation = ",
                            finetune.mc_context + finetune.mc_continuation, " is out of range (at most lm.context = ",
                            lm.context, ")"));
  }
  if (model.kind == "lm") {
    if (model.d_model % lm.heads != 0)
      throw ConfigError(str("config: lm.heads = ", lm.heads, " is out of range (model.d_model = ", model.d_model,
                            " must divide by it)"));
    if (lm.positions == "rope" && (model.d_model / lm.heads) % 2 != 0)
      throw ConfigError(str("config: lm.positions = 'rope' needs an even head width (model.d_model / lm.heads = ",
                            model.d_model / lm.heads, ")"));
    if (train.gradnoise_every > 0)
      throw ConfigError(str("config: train.gradnoise_every = ", train.gradnoise_every,
                            " is not supported for model.kind = 'lm' yet (set it to 0)"));
    if (lm.moe_every > 0 && !router.causal && !lm.allow_noncausal_router)
      throw ConfigError("config: moe.router.kind = '" + moe.router.kind() + "' is not causal: in a language model each expert's "
                        "choice of tokens sees future positions (set lm.allow_noncausal_router = true to force it)");
  }
  if (train.min_lr_ratio > 0 && train.lr_schedule == "constant")
    throw ConfigError(str("config: train.min_lr_ratio = ", train.min_lr_ratio,
                          " has no effect with train.lr_schedule = 'constant' (set it to 0)"));
}

std::string Config::to_yaml() { return schema().to_yaml(); }

namespace {

/// One table per kind of a group: the options that kind brings under the group's prefix.
template <class Reg>
std::string kinds_reference(const Reg& registry, const std::string& group, const std::string& kind_key,
                            KindChoice (*defaults)(const std::string&)) {
  std::string md;
  for (const std::string& name : registry.names()) {
    KindChoice c = defaults(name);
    Schema s;
    const std::string section = group + "." + kind_key + " = " + name;
    SchemaBinder binder(s, group + ".", section);
    c.options().visit(binder);
    md += str("#### `", section, "`\n\n");
    md += s.fields().empty() ? std::string("No options.\n\n") : s.reference_markdown(section, "") + "\n";
  }
  return md;
}

}  // namespace

std::string reference_markdown() {
  Config defaults;
  std::string md = defaults.schema().reference_markdown();
  md += "\n## Options of each kind\n\n"
        "A gate, a router and a schedule each bring their own keys, valid only with that kind: "
        "`moe.router.kind: top_k` brings `moe.router.k`, `moe.router.normalize` and "
        "`moe.router.temperature`. Another kind's key is an error that lists the valid ones.\n\n";
  md += "### Gates (`moe.gate.kind`)\n\n" + kinds_reference(moe::gate_registry(), "moe.gate", "kind", moe::gate_choice);
  md += "### Routers (`moe.router.kind`)\n\n" +
        kinds_reference(moe::router_registry(), "moe.router", "kind", moe::router_choice);
  md += "### Schedules (`moe.layers.schedule`)\n\n" +
        kinds_reference(moe::schedule_registry(), "moe.layers", "schedule", moe::schedule_choice);
  return md;
}

namespace {

bool known_gate(const std::string& n) { return moe::gate_registry().contains(n); }
bool known_router(const std::string& n) { return moe::router_registry().contains(n); }
bool known_schedule(const std::string& n) { return moe::schedule_registry().contains(n); }

/// The kind a YAML text and its overrides choose for a group (the last override wins), or ""
/// when neither says.
std::string chosen_kind(const YAML::Node& root, const std::vector<std::string>& path, const std::string& kind_key,
                        const std::vector<std::string>& overrides) {
  std::string key;
  for (const auto& part : path) key += part + ".";
  key += kind_key;
  // Nested maps (moe: {router: {kind: x}}) or a dotted key at any level (moe.router.kind: x).
  std::string kind;
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n, const std::string& prefix) {
    if (!n.IsMap()) return;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) continue;
      const std::string k = prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar();
      if (k == key && kv.second.IsScalar()) kind = kv.second.Scalar();
      else if (key.rfind(k + ".", 0) == 0) walk(kv.second, k);
    }
  };
  walk(root, "");
  for (const auto& o : overrides)
    if (o.rfind(key + "=", 0) == 0) {
      try {
        const YAML::Node v = YAML::Load(o.substr(key.size() + 1));
        if (v.IsScalar()) kind = v.Scalar();
      } catch (const YAML::Exception&) {
      }
    }
  return kind;
}

/// Sets each kind group of `c` to the kind the text and overrides choose, with that kind's
/// default options, so that the schema then holds exactly that kind's keys. An unknown kind is
/// left to the schema's check, which lists the valid ones.
void choose_kinds(Config& c, const std::string& yaml_text, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception&) {
    return;  // load_yaml_text reports it with its position
  }
  struct Group {
    std::vector<std::string> path;
    std::string kind_key;
    KindChoice* choice;
    KindChoice (*defaults)(const std::string&);
    bool (*known)(const std::string&);
  };
  const Group groups[] = {{{"moe", "gate"}, "kind", &c.moe.gate, moe::gate_choice, known_gate},
                          {{"moe", "router"}, "kind", &c.moe.router, moe::router_choice, known_router},
                          {{"moe", "layers"}, "schedule", &c.moe.layers.schedule, moe::schedule_choice, known_schedule}};
  for (const Group& g : groups) {
    const std::string kind = chosen_kind(root, g.path, g.kind_key, overrides);
    if (!kind.empty() && g.known(kind)) *g.choice = g.defaults(kind);
  }
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& where,
                    const std::vector<std::string>& overrides) {
  Config c;
  choose_kinds(c, yaml_text, overrides);
  Schema s = c.schema();
  s.load_yaml_text(yaml_text, where);
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError(str("config: --set expects key=value, got '", o, "'"));
    s.set(o.substr(0, eq), o.substr(eq + 1), "--set " + o);
  }
  c.validate();
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return parse_config("", "defaults", overrides);
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw ConfigError(str("config: ", e.what()));
  }
  return parse_config(text, path, overrides);
}

}  // namespace dynamoe::config
