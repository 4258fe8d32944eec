#pragma once
// The image-classification task (model.kind = mlp, cnn, moe_mlp, moe_cnn): shuffled epochs of
// images -> cross-entropy (+ MoE auxiliary losses); test loss, accuracy and per-layer MoE
// figures; optional gradient-noise rows (train.gradnoise_every).
#include "dynamoe/config/config.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/train/evaluate.h"
#include "dynamoe/train/task.h"

namespace dynamoe::train {

class ClassifierTask : public Task {
 public:
  /// Loads the data and builds the model (seeded by train.seed); nothing is written.
  explicit ClassifierTask(const config::Config& cfg);
  torch::nn::Module& model() override { return *model_; }
  std::string unit() const override { return "samples"; }
  int64_t batches_per_epoch() const override { return sampler_.batches_per_epoch(); }
  int64_t default_eval_every(int64_t) const override { return batches_per_epoch(); }
  void check_resume(const io::TrainerState& state) const override;
  void start(const RunInfo& run, MetricsLog& metrics, std::ostream& out) override;
  StepOutput forward(int64_t step) override;
  int64_t batch_rows(int64_t step) const override;
  int64_t smallest_batch() const override;
  void after_step() override { model_->after_step(); }
  std::vector<nlohmann::json> extra_rows(int64_t step) override;
  EvalOutput evaluate() override;
  void finish(const RunInfo& run, nlohmann::json& summary, TrainResult& result, std::ostream& out) override;

 private:
  const config::Config cfg_;
  data::DataSplits data_;
  models::Classifier model_;
  data::EpochSampler sampler_;
  EvalResult last_eval_;
};

}  // namespace dynamoe::train
