#include "dynamoe/train/lm_task.h"

#include <torch/torch.h>

#include <chrono>

#include "dynamoe/train/lm_checkpoint.h"
#include "dynamoe/train/moe_report.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
using nlohmann::json;

namespace {

/// Bytes of text per token of the val split, from the corpus meta (0 when unknown).
double val_bytes_per_token(const data::TokenCorpus& c) {
  try {
    const auto& v = c.meta.at("splits").at("val");
    const double tokens = v.at("tokens").get<double>(), bytes = v.at("text_bytes").get<double>();
    return tokens > 0 ? bytes / tokens : 0.0;
  } catch (const std::exception&) {
    return 0.0;
  }
}

}  // namespace

LMTask::LMTask(const config::Config& cfg)
    : cfg_(cfg), corpus_(data::open_token_corpus(lm_corpus_dir(cfg.data), cfg.data.tokenizer)), bytes_per_token_(val_bytes_per_token(corpus_)) {
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  model_ = models::lm::TransformerLM(cfg, corpus_.vocab_size);
  model_->train();
}

int64_t LMTask::batches_per_epoch() const {
  return std::max<int64_t>(1, corpus_.train.size() / (cfg_.train.batch_size * cfg_.lm.context));
}

void LMTask::start(const RunInfo& run, MetricsLog&, std::ostream& out) {
  const auto t_bigram = std::chrono::steady_clock::now();
  bigram_ = std::make_unique<models::lm::BigramLM>(corpus_.train.data(), corpus_.train.size(), corpus_.vocab_size);
  const double bigram_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_bigram).count();
  out << "run " << run.run_dir << ": lm with " << model_->num_parameters() << " parameters ("
      << model_->num_non_embedding_parameters() << " without embeddings), " << cfg_.lm.layers << " blocks";
  if (!model_->experts_per_moe_block().empty()) {
    out << ", experts per MoE block:";
    for (int64_t e : model_->experts_per_moe_block()) out << " " << e;
  }
  out << "\n  data " << corpus_.dir << ": " << corpus_.train.size() << " train / " << corpus_.val.size()
      << " val tokens (" << corpus_.tokenizer << ", vocab " << corpus_.vocab_size << "); " << run.total_steps
      << " steps of " << cfg_.train.batch_size << " x " << cfg_.lm.context << " tokens, " << run.threads
      << " threads; bigram baseline fitted in " << fmt("%.1f s", bigram_s) << "\n";
}

StepOutput LMTask::forward(int64_t step) {
  const int64_t T = cfg_.lm.context;
  auto [xb, yb] = lm_train_batch(corpus_.train, cfg_.train.batch_size, T, static_cast<uint64_t>(cfg_.train.seed),
                                 step);  // [batch_size, T] each
  const at::Tensor x = shard_.rows(xb), y = shard_.rows(yb);  // [B, T]: this process's rows
  const int64_t B = x.size(0);
  models::lm::LMOutput mo = model_->forward(x);
  at::Tensor loss = at::cross_entropy_loss(mo.logits.reshape({B * T, -1}), y.reshape({-1}));
  return {loss, mo.aux_loss, std::move(mo.moe_stats), B * T};
}

EvalOutput LMTask::evaluate() {
  last_eval_ = evaluate_lm(*model_, corpus_.val, cfg_.lm.context, cfg_.train.batch_size, cfg_.lm.eval_tokens,
                           bytes_per_token_, bigram_.get());
  const LMEvalResult& ev = last_eval_;
  EvalOutput o;
  o.row = {{"split", "val"},
           {"loss", ev.loss},
           {"perplexity", ev.perplexity},
           {"bits_per_byte", ev.bits_per_byte},
           {"bigram_perplexity", ev.bigram_perplexity},
           {"tokens", ev.tokens}};
  o.line = str("val loss ", fmt("%.4f", ev.loss), "  perplexity ", fmt("%.2f", ev.perplexity), " (bigram ",
               fmt("%.2f", ev.bigram_perplexity), ")",
               ev.bits_per_byte > 0 ? "  bits/byte " + fmt("%.3f", ev.bits_per_byte) : "");
  add_moe_eval(ev.moe, "MoE block", o.row, o.line);
  return o;
}

void LMTask::finish(const RunInfo&, json& summary, TrainResult& result, std::ostream& out) {
  const LMEvalResult& ev = last_eval_;
  result.test_loss = ev.loss;
  result.perplexity = ev.perplexity;
  result.bigram_perplexity = ev.bigram_perplexity;
  summary["parameters"] = model_->num_parameters();
  summary["non_embedding_parameters"] = model_->num_non_embedding_parameters();
  summary["val_loss"] = ev.loss;
  summary["val_perplexity"] = ev.perplexity;
  summary["val_bits_per_byte"] = ev.bits_per_byte;
  summary["val_tokens"] = ev.tokens;
  summary["bigram_val_perplexity"] = ev.bigram_perplexity;
  add_moe_summary(ev.moe, "MoE blocks on the val split", summary, out);
  out << "done: " << result.steps << " steps, val perplexity " << fmt("%.2f", ev.perplexity) << " vs bigram "
      << fmt("%.2f", ev.bigram_perplexity) << " on the same " << ev.tokens << " val tokens";
  if (ev.bits_per_byte > 0) out << " (" << fmt("%.3f", ev.bits_per_byte) << " bits/byte)";
  out << ", " << fmt("%.0f", summary.value("train_tokens_per_s", 0.0)) << " tokens/s, checkpoint "
      << result.checkpoint << "\n";
}

}  // namespace dynamoe::train
