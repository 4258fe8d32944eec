#include "dynamoe/config/config.h"

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::config {

Schema Config::schema() {
  Schema s;
  // model
  s.add_string("model.kind", &model.kind, "model to build", {"mlp", "cnn"});
  s.add_int_list("model.hidden", &model.hidden, "MLP hidden layer widths", 1);
  s.add_int_list("model.channels", &model.channels,
                 "CNN channels: one 3x3 conv (padding 1) + 2x2 max-pool per entry", 1);
  s.add_int("model.cnn_fc", &model.cnn_fc, "CNN width of the fully connected layer", 1);
  s.add_string("model.activation", &model.activation, "hidden activation",
               {"relu", "gelu", "silu", "tanh"});
  s.add_string("model.norm", &model.norm, "normalisation after each hidden layer",
               {"none", "layernorm", "batchnorm"});
  s.add_float("model.dropout", &model.dropout, "dropout probability after hidden activations", 0.0, 0.95);
  // data
  s.add_string("data.dataset", &data.dataset, "dataset name (fetched ones live in data.dir/<name>)",
               {"mnist", "fashion-mnist", "cifar10", "idx"});
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
  s.add_int("train.seed", &train.seed, "seed of every random choice (init, shuffling, dropout)", 0);
  s.add_int("train.threads", &train.threads, "intra-op threads (0: all cores)", 0, 1024);
  s.add_string("train.runs_dir", &train.runs_dir, "folder that holds run folders");
  return s;
}

void Config::validate() {
  Schema s = schema();
  s.check_ranges();
  if (model.kind == "mlp" && model.hidden.empty())
    throw ConfigError("config: model.hidden = [] is out of range (an MLP needs at least one hidden layer)");
  if (model.kind == "cnn" && model.channels.empty())
    throw ConfigError("config: model.channels = [] is out of range (a CNN needs at least one conv)");
  if ((data.dataset == "idx" || data.dataset == "cifar10") && data.path.empty())
    throw ConfigError(str("config: data.path = '' must name a folder when data.dataset = '",
                          data.dataset, "'"));
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
