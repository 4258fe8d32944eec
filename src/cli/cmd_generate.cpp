// dynamoe generate: sample text from a trained language model.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/lm/generate.h"
#include "dynamoe/train/lm_checkpoint.h"
#include "dynamoe/train/trainer.h"
#include "dynamoe/util/error.h"

namespace dynamoe::cli {
namespace {

int run(const ParsedArgs& a) {
  if (!a.has("checkpoint")) throw UsageError("dynamoe generate: --checkpoint PATH is required; see dynamoe generate --help");
  if (!a.has("prompt")) throw UsageError("dynamoe generate: --prompt TEXT is required; see dynamoe generate --help");
  models::lm::GenerateOptions g;
  g.max_new_tokens = a.get_int("max-tokens", 200, 0);
  g.sample.temperature = a.get_double("temperature", 0.8, 0.0, 1e6);
  g.sample.top_k = a.get_int("top-k", 0, 0);
  g.sample.top_p = a.get_double("top-p", 1.0, 1e-9, 1.0);
  g.sample.seed = static_cast<uint64_t>(a.get_int("seed", 0, 0));
  g.use_cache = !a.has("no-cache");
  train::LMCheckpoint c = train::load_lm_checkpoint(io::resolve_checkpoint(a.get("checkpoint")), a.all("set"));
  const int threads = train::set_threads(a.get_int("threads", c.cfg.train.threads, 0));
  if (!a.has("no-stop")) g.stop_id = c.tokenizer->eot_id();
  const std::vector<int32_t> prompt = c.tokenizer->encode(a.get("prompt"));
  const std::string prompt_text = a.get("prompt");
  std::fwrite(prompt_text.data(), 1, prompt_text.size(), stdout);
  std::fflush(stdout);
  // Stream the text: print each token's bytes as soon as they decode (multi-byte characters
  // may span tokens, so decode the whole continuation and print what is new).
  std::vector<int32_t> generated;
  size_t printed = 0;
  auto on_token = [&](int32_t id) {
    generated.push_back(id);
    const std::string text = c.tokenizer->decode(generated);
    std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
    std::fflush(stdout);
    printed = text.size();
  };
  models::lm::GenerateResult r = models::lm::generate(*c.model, prompt, g, on_token);
  std::printf("\n");
  std::fflush(stdout);  // the text's last line ends before the stats line, also when both go to one pipe
  std::fprintf(stderr, "%zu prompt + %zu new tokens in %.2f s: %.1f tokens/s (%s, %d threads, %s)\n", prompt.size(),
               r.tokens.size(), r.seconds, r.tokens_per_s, g.use_cache ? "KV cache" : "no cache", threads,
               c.dir.c_str());
  return 0;
}

}  // namespace

Command generate_command() {
  return {{"generate",
           "sample text from a trained language model",
           "dynamoe generate --checkpoint PATH --prompt TEXT [--max-tokens N] [--temperature T]\n"
           "       [--top-k K] [--top-p P] [--seed S] [--no-cache] [--no-stop] [--threads N] [--set KEY=VALUE]...",
           "Prints the prompt and its continuation as it is generated, then (on stderr) the number\n"
           "of tokens and tokens/s. --temperature 0 is greedy decoding. Generation stops at the\n"
           "end-of-text token (unless --no-stop) or after N new tokens; when the text fills the\n"
           "context, the model continues from the last half of it. PATH is a checkpoint folder, a\n"
           "run folder (its newest checkpoint) or a model.safetensors file.",
           {{"checkpoint", "PATH", "checkpoint folder, run folder or model.safetensors"},
            {"prompt", "TEXT", "the text to continue (at most lm.context tokens)"},
            {"max-tokens", "N", "new tokens at most (default 200)"},
            {"temperature", "T", "softmax temperature; 0 = greedy (default 0.8)"},
            {"top-k", "K", "sample among the K most likely tokens (default 0: all)"},
            {"top-p", "P", "nucleus sampling mass (default 1: off)"},
            {"seed", "S", "random seed (default 0)"},
            {"no-cache", "", "recompute the whole window each step instead of using the KV cache"},
            {"no-stop", "", "do not stop at the end-of-text token"},
            {"threads", "N", "intra-op threads (default: the run's train.threads)"},
            {"set", "KEY=VALUE", "override a key of the saved config (e.g. data.dir)", true}},
           0},
          run};
}

}  // namespace dynamoe::cli
