#include "dynamoe/train/classifier_task.h"

#include <torch/torch.h>

#include "dynamoe/train/gradnoise.h"
#include "dynamoe/train/moe_report.h"
#include "dynamoe/util/error.h"

namespace dynamoe::train {
using nlohmann::json;

namespace {
models::Classifier seeded_model(const config::Config& cfg, const models::InputSpec& spec) {
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  models::Classifier m = models::build_model(cfg, spec);
  m->train();
  return m;
}
}  // namespace

ClassifierTask::ClassifierTask(const config::Config& cfg)
    : cfg_(cfg),
      data_(data::load_data(cfg.data)),
      model_(seeded_model(cfg, data_.spec)),
      sampler_(data_.train.size(), cfg.train.batch_size, static_cast<uint64_t>(cfg.train.seed)) {}

void ClassifierTask::check_resume(const io::TrainerState& s) const {
  const int64_t per_epoch = batches_per_epoch();
  DYNAMOE_CHECK(s.epoch == s.step / per_epoch && s.batch_in_epoch == s.step % per_epoch,
                "data position of the newest checkpoint (epoch ", s.epoch, ", batch ", s.batch_in_epoch,
                ") does not match step ", s.step, " with ", per_epoch, " batches per epoch");
}

void ClassifierTask::start(const RunInfo& run, MetricsLog&, std::ostream& out) {
  out << "run " << run.run_dir << ": " << cfg_.model.kind << " with " << model_->num_parameters() << " parameters, "
      << data_.train.size() << " train / " << data_.test.size() << " test examples from " << data_.source << ", "
      << run.total_steps << " steps (" << batches_per_epoch() << " per epoch), " << run.threads << " threads\n";
}

StepOutput ClassifierTask::forward(int64_t step) {
  const int64_t per_epoch = batches_per_epoch();
  at::Tensor idx = shard_.rows(sampler_.batch(step / per_epoch, step % per_epoch));  // [B / shards]
  at::Tensor x = data_.train.images.index_select(0, idx);                // [B, C, H, W]
  at::Tensor y = data_.train.labels.index_select(0, idx);                // [B]
  models::ModelOutput mo = model_->forward(x);
  return {torch::nn::functional::cross_entropy(mo.logits, y), mo.aux_loss, std::move(mo.moe_stats), idx.size(0)};
}

int64_t ClassifierTask::batch_rows(int64_t step) const {
  const int64_t n = data_.train.size(), B = cfg_.train.batch_size, b = step % batches_per_epoch();
  return std::min(B, n - b * B);
}

int64_t ClassifierTask::smallest_batch() const {
  const int64_t n = data_.train.size(), B = cfg_.train.batch_size;
  return n % B == 0 || n < B ? std::min(n, B) : n % B;
}

std::vector<json> ClassifierTask::extra_rows(int64_t step) {
  const config::TrainConfig& tc = cfg_.train;
  if (tc.gradnoise_every <= 0 || step % tc.gradnoise_every != 0) return {};
  auto layers = gradient_noise(*model_, data_.train, std::min(tc.batch_size, data_.train.size()),
                               tc.gradnoise_batches, static_cast<uint64_t>(tc.seed) * 7919u + step);
  json rows = json::array();
  for (const auto& L : layers)
    rows.push_back({{"layer", L.layer}, {"parameters", L.parameters}, {"trace_var", L.trace_var},
                    {"mean_grad_sq", L.mean_grad_sq}, {"ratio", L.ratio}});
  return {{{"step", step},
           {"epoch", static_cast<double>(step) / batches_per_epoch()},
           {"split", "gradnoise"},
           {"layers", rows}}};
}

EvalOutput ClassifierTask::evaluate() {
  last_eval_ = train::evaluate(*model_, data_.test);
  const EvalResult& ev = last_eval_;
  EvalOutput o;
  o.row = {{"split", "test"}, {"loss", ev.loss}, {"accuracy", ev.accuracy}};
  o.line = str("test loss ", fmt("%.4f", ev.loss), "  accuracy ", fmt("%.2f%%", 100.0 * ev.accuracy));
  add_moe_eval(ev.moe, "layer", o.row, o.line);
  return o;
}

void ClassifierTask::finish(const RunInfo&, json& summary, TrainResult& result, std::ostream& out) {
  result.test_loss = last_eval_.loss;
  result.test_accuracy = last_eval_.accuracy;
  summary["test_loss"] = result.test_loss;
  summary["test_accuracy"] = result.test_accuracy;
  add_moe_summary(last_eval_.moe, "MoE layers on the test set", summary, out);
  out << "done: " << result.steps << " steps, test accuracy " << fmt("%.2f%%", 100.0 * result.test_accuracy)
      << ", checkpoint " << result.checkpoint << "\n";
}

}  // namespace dynamoe::train
