#include "dynamoe/train/lm_checkpoint.h"

#include <torch/torch.h>

#include <filesystem>

#include "dynamoe/data/corpus.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/train/trainer.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
namespace fs = std::filesystem;

std::string lm_corpus_dir(const config::DataConfig& cfg) {
  const std::string dir = data::corpus_dir(cfg.dir, cfg.dataset, cfg.tokenizer);
  DYNAMOE_CHECK(fs::exists(fs::path(dir) / "meta.json"), "text corpus '", cfg.dataset, "' with the ", cfg.tokenizer,
                " tokenizer is not in ", dir, ": run `dynamoe data fetch ", cfg.dataset, " --tokenizer ",
                cfg.tokenizer, (cfg.dir == "data" ? "" : " --data-dir " + cfg.dir), "` first");
  return dir;
}

std::unique_ptr<text::Tokenizer> lm_tokenizer(const config::DataConfig& cfg) {
  const std::string dir = (fs::path(cfg.dir) / "gpt2").string();
  if (cfg.tokenizer == "gpt2")
    DYNAMOE_CHECK(fs::exists(fs::path(dir) / "encoder.json"), "the GPT-2 vocabulary is not in ", dir,
                  ": run `dynamoe data fetch gpt2", (cfg.dir == "data" ? "" : " --data-dir " + cfg.dir), "` first");
  return text::make_tokenizer(cfg.tokenizer, dir);
}

LMCheckpoint load_lm_checkpoint(const std::string& checkpoint_dir, const std::vector<std::string>& overrides) {
  LMCheckpoint c;
  c.dir = checkpoint_dir;
  const std::string cfg_path = (fs::path(checkpoint_dir) / "config.yaml").string();
  c.cfg = config::parse_config(read_file(cfg_path), cfg_path, overrides);
  DYNAMOE_CHECK(c.cfg.model.kind == "lm", checkpoint_dir, ": holds a '", c.cfg.model.kind,
                "' model, not a language model (model.kind = lm)");
  c.tokenizer = lm_tokenizer(c.cfg.data);
  c.model = models::lm::TransformerLM(c.cfg, c.tokenizer->vocab_size());
  io::load_state_dict(*c.model, (fs::path(checkpoint_dir) / "model.safetensors").string(), other_ranks_experts());
  c.model->eval();
  c.step = io::load_trainer_state(checkpoint_dir).step;
  return c;
}

}  // namespace dynamoe::train
