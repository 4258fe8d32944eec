#pragma once
// The language-model task (model.kind = lm): random token windows from the memory-mapped train
// split -> TransformerLM -> next-token cross-entropy (+ MoE auxiliary losses); val perplexity
// next to a bigram baseline fitted on the same train split; per-layer MoE figures. A batch
// depends only on the seed and the step, so resumption is exact.
#include <memory>

#include "dynamoe/config/config.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/models/lm/bigram.h"
#include "dynamoe/models/lm/transformer.h"
#include "dynamoe/train/lm_data.h"
#include "dynamoe/train/task.h"

namespace dynamoe::train {

class LMTask : public TokenTask {
 public:
  /// Opens the corpus and builds the model (seeded by train.seed); nothing is written.
  explicit LMTask(const config::Config& cfg);
  torch::nn::Module& model() override { return *model_; }
  int64_t batches_per_epoch() const override;
  void start(const RunInfo& run, MetricsLog& metrics, std::ostream& out) override;
  StepOutput forward(int64_t step) override;
  int64_t batch_rows(int64_t) const override { return cfg_.train.batch_size; }
  int64_t smallest_batch() const override { return cfg_.train.batch_size; }
  void after_step() override { model_->after_step(); }
  EvalOutput evaluate() override;
  void finish(const RunInfo& run, nlohmann::json& summary, TrainResult& result, std::ostream& out) override;

 private:
  const config::Config cfg_;
  data::TokenCorpus corpus_;
  models::lm::TransformerLM model_{nullptr};
  std::unique_ptr<models::lm::BigramLM> bigram_;
  double bytes_per_token_ = 0;
  LMEvalResult last_eval_;
};

}  // namespace dynamoe::train
