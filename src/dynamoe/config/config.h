#pragma once
// Experiment configuration: grouped structs (model, data, train) loaded from YAML, overridden
// from the command line (`--set train.lr=3e-4`), checked by one validate(), and saved
// resolved into the run folder. The full key reference is docs/config.md
// (`dynamoe config --reference` regenerates it).
#include <cstdint>
#include <string>
#include <vector>

#include "dynamoe/config/schema.h"

namespace dynamoe::config {

/// What network to build.
struct ModelConfig {
  std::string kind = "mlp";                    ///< registered model name (mlp, cnn)
  std::vector<int64_t> hidden = {512, 256};    ///< MLP hidden widths
  std::vector<int64_t> channels = {32, 64};    ///< CNN conv channels (one 3x3 conv + 2x2 pool each)
  int64_t cnn_fc = 128;                        ///< CNN width of the fully connected layer
  std::string activation = "relu";             ///< relu | gelu | silu | tanh
  std::string norm = "none";                   ///< none | layernorm | batchnorm
  double dropout = 0.1;                        ///< dropout after each hidden activation
};

/// Which data and how to read it.
struct DataConfig {
  std::string dataset = "fashion-mnist";       ///< mnist | fashion-mnist | cifar10 | idx
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
  std::string schedule = "cosine";             ///< constant | cosine (both with warmup)
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
  int64_t seed = 0;
  int64_t threads = 0;                         ///< intra-op threads (0: all cores)
  std::string runs_dir = "runs";
};

/// A whole experiment.
struct Config {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;

  /// The schema binding every key to a member of *this (rebuild it after copying).
  Schema schema();
  /// Range, choice and cross-field checks; throws ConfigError naming the key and value.
  void validate();
  /// The resolved configuration as YAML.
  std::string to_yaml();
};

/// Loads `path` (may be empty: defaults), applies `overrides` ("key=value"), validates.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// Parses YAML text (`where` names it in errors), applies `overrides` ("key=value"), validates.
Config parse_config(const std::string& yaml_text, const std::string& where,
                    const std::vector<std::string>& overrides = {});

}  // namespace dynamoe::config
