#include "dynamoe/config/config.h"

#include <algorithm>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::config {

Schema Config::schema() {
  Schema s;
  // model
  s.add_string("model.kind", &model.kind, "model to build", {"mlp", "cnn", "moe_mlp", "moe_cnn", "lm", "finetune"});
  s.add_int_list("model.hidden", &model.hidden, "MLP hidden layer widths", 1);
  s.add_int_list("model.channels", &model.channels,
                 "CNN channels: one 3x3 conv (padding 1) + 2x2 max-pool per entry", 1);
  s.add_int("model.cnn_fc", &model.cnn_fc, "CNN width of the fully connected layer", 1);
  s.add_string("model.activation", &model.activation, "hidden activation",
               {"relu", "gelu", "silu", "tanh"});
  s.add_string("model.norm", &model.norm, "normalisation after each hidden layer",
               {"none", "layernorm", "batchnorm"});
  s.add_float("model.dropout", &model.dropout, "dropout probability after hidden activations", 0.0, 0.95);
  s.add_int("model.d_model", &model.d_model, "MoE models: width of the residual stream", 1);
  s.add_int("model.moe_layers", &model.moe_layers, "MoE-MLP: number of MoE blocks", 1, 64);
  // moe
  s.add_string("moe.gate", &moe.gate, "gate: x -> logits", {"linear", "quadratic_polynomial", "quadratic_monomial", "mlp"});
  s.add_bool("moe.gate_bias", &moe.gate_bias, "linear gate: add a bias");
  s.add_int("moe.gate_rank", &moe.gate_rank, "quadratic gates: rank r of A_i = P_i^T Q_i (0: full D x D)", 0);
  s.add_int("moe.gate_mlp_mult", &moe.gate_mlp_mult, "mlp gate: hidden width = mult * E", 1);
  s.add_bool("moe.gate_residual", &moe.gate_residual, "gating residual z_l = gate(x) + W_map z_{l-1} (MoE++)");
  s.add_string("moe.router", &moe.router, "router: logits -> active experts and weights",
               {"top_k", "top_p", "threshold", "dynamoe", "tsallis_hybrid", "expert_choice", "hash", "random"});
  s.add_float("moe.temperature", &moe.temperature, "p = softmax(z / T) (top_k, top_p, threshold, expert_choice)", 0.0, 100.0, true);
  s.add_int("moe.k", &moe.k, "top_k / random / expert_choice: experts per token", 1);
  s.add_bool("moe.top_k_normalize", &moe.top_k_normalize, "top_k: w = p_S / sum p_S (Mixtral) instead of p_S (Switch)");
  s.add_float("moe.top_p", &moe.top_p, "top_p: cumulative probability to reach", 0.0, 1.0, true);
  s.add_int("moe.top_p_min_k", &moe.top_p_min_k, "top_p: at least this many experts", 1);
  s.add_int("moe.top_p_max_k", &moe.top_p_max_k, "top_p: at most this many experts (0: E)", 0);
  s.add_bool("moe.top_p_normalize", &moe.top_p_normalize, "top_p: renormalise the selected weights");
  s.add_float("moe.theta", &moe.theta, "threshold: S = {i : p_i >= theta}", 0.0, 1.0);
  s.add_bool("moe.threshold_normalize", &moe.threshold_normalize, "threshold: renormalise the selected weights");
  s.add_float("moe.dynamoe_temperature", &moe.dynamoe_temperature, "dynamoe: g = softmax(z / T)", 0.0, 100.0, true);
  s.add_float("moe.dynamoe_sigma", &moe.dynamoe_sigma, "dynamoe: std of the training noise on g", 0.0);
  s.add_float("moe.dynamoe_tau", &moe.dynamoe_tau, "dynamoe: quantile level of the per-token threshold", 0.0, 1.0);
  s.add_float("moe.tsallis_q", &moe.tsallis_q, "tsallis_hybrid: entropic index q", 0.0);
  s.add_float("moe.tsallis_top_p", &moe.tsallis_top_p, "tsallis_hybrid: top-p mass", 0.0, 1.0);
  s.add_float("moe.tsallis_threshold", &moe.tsallis_threshold, "tsallis_hybrid: H_norm above which all experts are active", 0.0);
  s.add_float("moe.tsallis_eps", &moe.tsallis_eps, "tsallis_hybrid: eps in (p + eps)^q", 0.0);
  s.add_int("moe.tsallis_keep_top_k", &moe.tsallis_keep_top_k, "tsallis_hybrid: experts always kept", 0);
  s.add_float("moe.expert_choice_capacity", &moe.expert_choice_capacity, "expert_choice: C = ceil(c * N * k / E)", 0.0, 1e6, true);
  s.add_float("moe.capacity_factor", &moe.capacity_factor, "token-choice capacity factor (0: dropless)", 0.0);
  s.add_bool("moe.bias_balancing", &moe.bias_balancing, "aux-loss-free bias balancing (DeepSeek-V3)");
  s.add_float("moe.bias_gamma", &moe.bias_gamma, "bias balancing step gamma", 0.0);
  s.add_string("moe.expert", &moe.expert, "kind of the computing experts", {"linear", "ffn", "swiglu"});
  s.add_int("moe.expert_hidden", &moe.expert_hidden, "hidden width F of ffn / swiglu experts", 1);
  s.add_string("moe.expert_activation", &moe.expert_activation, "ffn expert activation", {"relu", "gelu", "silu", "tanh"});
  s.add_int("moe.n_zero", &moe.n_zero, "zero experts per layer (MoE++), part of E_l", 0);
  s.add_int("moe.n_copy", &moe.n_copy, "copy experts per layer (MoE++), part of E_l", 0);
  s.add_int("moe.n_constant", &moe.n_constant, "constant experts per layer (MoE++), part of E_l", 0);
  s.add_int("moe.n_shared", &moe.n_shared, "shared experts per layer (weight 1 for every token)", 0);
  s.add_string("moe.kernel", &moe.kernel, "expert computation: grouped (fast path) or loop (per-expert autograd reference)",
               {"grouped", "loop"});
  s.add_string("moe.precision", &moe.precision, "expert GEMMs: fp32, or bf16 mixed precision (fp32 masters and router)",
               {"fp32", "bf16"});
  s.add_string("moe.schedule", &moe.schedule, "experts per layer across depth",
               {"uniform", "descending", "ascending", "pyramid", "hourglass", "wave"});
  s.add_int("moe.e_min", &moe.e_min, "schedule: fewest experts in a layer", 1);
  s.add_int("moe.e_max", &moe.e_max, "schedule: most experts in a layer", 1);
  s.add_int("moe.total_experts", &moe.total_experts, "schedule: rescale so the layers hold this many in all (0: off)", 0);
  s.add_float("moe.wave_frequency", &moe.wave_frequency, "wave schedule: cycles over the depth", 0.0);
  s.add_bool("moe.schedule_k_max", &moe.schedule_k_max, "the schedule (same shape) also sets each layer's k_max");
  s.add_int("moe.k_max_min", &moe.k_max_min, "schedule_k_max: smallest k_max", 1);
  s.add_int("moe.k_max_max", &moe.k_max_max, "schedule_k_max: largest k_max", 1);
  s.add_float("moe.load_balance", &moe.load_balance, "coefficient of the Switch load-balance loss", 0.0);
  s.add_float("moe.z_loss", &moe.z_loss, "coefficient of the ST-MoE router z-loss", 0.0);
  s.add_float("moe.entropy", &moe.entropy, "coefficient of the routing-entropy loss (1e-4 in Huang et al., docs/methods.md section 4.3)", 0.0);
  s.add_float("moe.tsallis", &moe.tsallis, "multiplier of the DynMoLE Tsallis loss (1: as written)", 0.0);
  // lm
  s.add_int("lm.layers", &lm.layers, "language model: transformer blocks", 1, 256);
  s.add_int("lm.heads", &lm.heads, "language model: attention heads (model.d_model must divide by it)", 1, 1024);
  s.add_int("lm.context", &lm.context, "language model: tokens per training sequence, longest prompt", 2, 1 << 16);
  s.add_int("lm.d_ff", &lm.d_ff, "language model: dense FFN hidden width (0: 4 * model.d_model)", 0);
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
  s.add_string("train.schedule", &train.schedule, "learning-rate schedule after linear warmup",
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
  s.add_int("finetune.mc_items", &finetune.mc_items, "fine-tuning: multiple-choice items per domain (0: none)", 0);
  s.add_int("finetune.mc_choices", &finetune.mc_choices, "fine-tuning: choices per multiple-choice item", 2, 64);
  s.add_int("finetune.mc_context", &finetune.mc_context, "fine-tuning: context tokens of a multiple-choice item", 1);
  s.add_int("finetune.mc_continuation", &finetune.mc_continuation, "fine-tuning: tokens of each choice", 1);
  return s;
}

void Config::validate() {
  Schema s = schema();
  s.check_ranges();
  if (model.kind == "mlp" && model.hidden.empty())
    throw ConfigError("config: model.hidden = [] is out of range (an MLP needs at least one hidden layer)");
  if (moe.e_min > moe.e_max)
    throw ConfigError(str("config: moe.e_min = ", moe.e_min, " is out of range (must be <= moe.e_max = ", moe.e_max, ")"));
  if (moe.k_max_min > moe.k_max_max)
    throw ConfigError(str("config: moe.k_max_min = ", moe.k_max_min, " is out of range (must be <= moe.k_max_max = ",
                          moe.k_max_max, ")"));
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
    if (lm.moe_every > 0 && moe.router == "expert_choice" && !lm.allow_noncausal_router)
      throw ConfigError("config: moe.router = 'expert_choice' is not causal: in a language model each expert's "
                        "choice of tokens sees future positions (set lm.allow_noncausal_router = true to force it)");
  }
  if (train.min_lr_ratio > 0 && train.schedule == "constant")
    throw ConfigError(str("config: train.min_lr_ratio = ", train.min_lr_ratio,
                          " has no effect with train.schedule = 'constant' (set it to 0)"));
}

std::string Config::to_yaml() { return schema().to_yaml(); }

Config parse_config(const std::string& yaml_text, const std::string& where,
                    const std::vector<std::string>& overrides) {
  Config c;
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
