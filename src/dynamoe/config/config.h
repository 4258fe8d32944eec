#pragma once
// Experiment configuration: grouped structs (model, data, train) loaded from YAML, overridden
// from the command line (`--set train.lr=3e-4`), checked by one validate(), and saved
// resolved into the run folder. The full key reference is docs/config.md
// (`dynamoe config --reference` regenerates it).
#include <cstdint>
#include <string>
#include <vector>

#include "dynamoe/config/schema.h"
#include "dynamoe/util/options.h"

namespace dynamoe::config {

/// What network to build.
struct ModelConfig {
  std::string kind = "mlp";                    ///< registered model name (mlp, cnn, moe_mlp, moe_cnn), lm or finetune
  std::vector<int64_t> hidden = {512, 256};    ///< MLP hidden widths
  std::vector<int64_t> channels = {32, 64};    ///< CNN conv channels (one 3x3 conv + 2x2 pool each)
  int64_t cnn_fc = 128;                        ///< CNN width of the fully connected layer
  std::string activation = "relu";             ///< relu | gelu | silu | tanh
  int64_t d_model = 128;                       ///< MoE-MLP width of the residual stream
  int64_t moe_layers = 4;                      ///< MoE-MLP number of MoE blocks
  std::string norm = "none";                   ///< none | layernorm | batchnorm
  double dropout = 0.1;                        ///< dropout after each hidden activation
};

/// Mixture-of-Experts layers (used by the moe_* models and the LM's MoE blocks), in groups:
/// gate, router, experts, layers (the schedule), losses. A gate, router and schedule is a kind
/// of a registry with its own options (moe.router.kind = top_k brings moe.router.k, ...).
/// Formulas: docs/methods.md.
struct MoEConfig {
  MoEConfig();  ///< linear gate, top_k router, uniform schedule, each with its default options
  KindChoice gate;             ///< moe.gate.kind and that gate's options
  bool gate_residual = false;  ///< moe.gate.residual: z_l = gate(x) + W_map z_{l-1} (MoE++)
  KindChoice router;           ///< moe.router.kind and that router's options
  /// The computing experts (moe.experts.*).
  struct Experts {
    std::string kind = "ffn";          ///< linear | ffn | swiglu
    int64_t hidden = 64;               ///< F of ffn / swiglu experts
    std::string activation = "gelu";   ///< ffn activation
    int64_t n_zero = 0, n_copy = 0, n_constant = 0;  ///< MoE++ zero-computation experts (part of E_l)
    int64_t n_shared = 0;              ///< shared experts every token uses with weight 1
  } experts;
  /// Experts per layer across depth (moe.layers.*).
  struct Layers {
    KindChoice schedule;               ///< moe.layers.schedule and its options
    int64_t e_min = 2, e_max = 8;
    int64_t total_experts = 0;         ///< rescale so that sum_l E_l = total (0: off)
    bool k_max = false;                ///< the schedule (same shape) also sets each layer's k_max
    int64_t k_max_min = 1, k_max_max = 4;
  } layers;
  /// Auxiliary loss coefficients (moe.losses.*).
  struct Losses {
    double load_balance = 1e-2, z_loss = 1e-3, entropy = 0.0, tsallis = 0.0;
    double tsallis_q = 1.1, tsallis_eps = 1e-5;  ///< q and eps of the Tsallis loss
  } losses;
  double capacity_factor = 0.0;      ///< token-choice capacity factor (0: dropless)
  bool bias_balancing = false;       ///< aux-loss-free balancing (DeepSeek-V3)
  double bias_gamma = 1e-3;
  std::string kernel = "grouped";    ///< grouped (one node, contiguous per-expert GEMMs) | loop (reference)
  std::string precision = "fp32";    ///< fp32 | bf16 (expert GEMMs in bf16, fp32 masters, router in fp32)
  int64_t expert_parallel = 1;       ///< P: processes that split each layer's experts (docs/distributed.md)
};

/// The decoder-only language model (model.kind = lm); width is model.d_model, the dense FFN
/// activation model.activation, dropout model.dropout.
struct LMConfig {
  int64_t layers = 4;                          ///< transformer blocks
  int64_t heads = 4;                           ///< attention heads (d_model divisible by heads)
  int64_t context = 256;                       ///< tokens per training sequence and longest prompt
  int64_t d_ff = 0;                            ///< dense FFN hidden width (0: 4 * d_model)
  std::string positions = "rope";              ///< rope | learned
  double rope_base = 10000.0;
  std::string attention_activation = "identity";  ///< sigma of active-attention (identity: standard)
  int64_t moe_every = 1;                       ///< 0: all dense; 1: MoE FFN in every block; 2: every other
  bool tie_embeddings = true;                  ///< output projection = token embedding matrix
  bool allow_noncausal_router = false;         ///< permit expert_choice (its routing sees future tokens)
  int64_t eval_tokens = 0;                     ///< val tokens scored per evaluation (0: all)
};

/// Which data and how to read it.
struct DataConfig {
  std::string dataset = "fashion-mnist";       ///< mnist | fashion-mnist | cifar10 | idx | a text corpus
  std::string tokenizer = "gpt2";              ///< text corpora: gpt2 | byte
  std::string dir = "data";                    ///< root folder of fetched data
  std::string path;                            ///< explicit dataset folder (overrides dir/dataset)
  int64_t train_limit = 0;                     ///< use only the first N training examples (0: all)
  int64_t test_limit = 0;                      ///< use only the first N test examples (0: all)
};

/// How to train.
struct TrainConfig {
  std::string optimizer = "adamw";             ///< adamw | sgd
  double lr = 1e-3;
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double momentum = 0.9;                       ///< SGD momentum
  bool nesterov = false;
  std::string lr_schedule = "cosine";          ///< constant | cosine (both with warmup)
  int64_t warmup_steps = 100;
  double min_lr_ratio = 0.0;                   ///< cosine floor as a fraction of lr
  int64_t batch_size = 128;
  int64_t epochs = 10;                         ///< used when steps == 0
  int64_t steps = 0;                           ///< total optimizer steps (0: from epochs)
  double grad_clip = 1.0;                      ///< max global gradient norm (0: off)
  int64_t eval_every = 0;                      ///< evaluate every N steps (0: each epoch end)
  int64_t log_every = 50;
  int64_t checkpoint_every = 0;                ///< checkpoint every N steps (0: at eval points)
  int64_t keep_checkpoints = 2;                ///< how many recent checkpoints to keep
  int64_t gradnoise_every = 0;                 ///< record gradient noise every N steps (0: off)
  int64_t gradnoise_batches = 16;              ///< mini-batches M per gradient-noise measurement
  int64_t seed = 0;
  int64_t threads = 0;                         ///< intra-op threads (0: all cores)
  std::string runs_dir = "runs";
};

/// Fine-tuning a frozen pretrained language model with adapters (model.kind = finetune).
struct FinetuneConfig {
  std::string base;                            ///< a dynamoe LM run or checkpoint folder
  std::string adapter = "lora";                ///< lora | mola | mixlora | dynmole
  std::string targets = "fc1|fc2";             ///< regex over projection paths (blocks.0.fc1, blocks.0.attn.qkv, ...)
  int64_t rank = 8;                            ///< LoRA rank r (of each expert in a mixture)
  double alpha = 16;                           ///< LoRA alpha (scale alpha / r)
  double dropout = 0.05;                       ///< LoRA dropout on the adapter's input
  int64_t experts = 6;                         ///< LoRA experts per adapted projection (mixtures)
  std::string domains;                         ///< comma-separated corpora, one batch share each ("": data.dataset)
  int64_t mc_items = 200;                      ///< multiple-choice items per domain (0: none)
  int64_t mc_choices = 4;                      ///< choices per item: the real continuation and distractors
  int64_t mc_context = 96;                     ///< context tokens of an item
  int64_t mc_continuation = 32;                ///< tokens of each choice
};

/// Running across processes (`dynamoe launch`, or torchrun's variables): docs/distributed.md.
struct DistConfig {
  double timeout_s = 120;         ///< a collective that waits longer fails, naming the lost rank
  double connect_timeout_s = 60;  ///< how long a process waits for every rank to join
};

/// A whole experiment.
struct Config {
  ModelConfig model;
  MoEConfig moe;
  LMConfig lm;
  DataConfig data;
  TrainConfig train;
  FinetuneConfig finetune;
  DistConfig dist;

  /// The schema binding every key to a member of *this (rebuild it after copying).
  Schema schema();
  /// Range, choice and cross-field checks; throws ConfigError naming the key and value.
  void validate();
  /// The resolved configuration as YAML.
  std::string to_yaml();
};

/// The Markdown reference of every key (docs/config.md): the main keys with their defaults, then
/// the options each registered gate, router and schedule brings.
std::string reference_markdown();

/// Loads `path` (may be empty: defaults), applies `overrides` ("key=value"), validates.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// Parses YAML text (`where` names it in errors), applies `overrides` ("key=value"), validates.
Config parse_config(const std::string& yaml_text, const std::string& where,
                    const std::vector<std::string>& overrides = {});

}  // namespace dynamoe::config
