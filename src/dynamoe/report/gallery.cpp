#include "dynamoe/report/gallery.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "dynamoe/config/config.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/io/checkpoint.h"
#include "dynamoe/models/classifier.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::report {
namespace fs = std::filesystem;

ImageRouting route_test_set(const std::string& run_dir) {
  const std::string ckpt = io::resolve_checkpoint(run_dir);
  const std::string cfg_path = (fs::path(ckpt) / "config.yaml").string();
  const config::Config cfg = config::parse_config(read_file(cfg_path), cfg_path);
  data::DataSplits data = data::load_data(cfg.data);
  models::Classifier model = models::build_model(cfg, data.spec);
  io::load_state_dict(*model, (fs::path(ckpt) / "model.safetensors").string());
  model->eval();
  torch::NoGradGuard no_grad;

  ImageRouting r;
  r.dataset = cfg.data.dataset;
  r.checkpoint = ckpt;
  r.images = data.test.images;
  const int64_t n = data.test.size();
  r.labels.assign(data.test.labels.data_ptr<int64_t>(), data.test.labels.data_ptr<int64_t>() + n);
  r.active.assign(n, 0.0);
  r.entropy.assign(n, 0.0);
  const int64_t batch = 1000;
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t j = std::min(n, i + batch);
    models::ModelOutput out = model->forward(data.test.images.slice(0, i, j));
    DYNAMOE_CHECK(!out.moe_stats.empty(), "report: ", run_dir, " has no MoE layer (", cfg.model.kind, ")");
    at::Tensor pred = out.logits.argmax(1).contiguous();  // [B]
    r.predictions.insert(r.predictions.end(), pred.data_ptr<int64_t>(), pred.data_ptr<int64_t>() + (j - i));
    r.active_per_layer.resize(out.moe_stats.size());
    for (size_t l = 0; l < out.moe_stats.size(); ++l) {
      const moe::LayerStats& st = out.moe_stats[l];
      DYNAMOE_CHECK(static_cast<int64_t>(st.token_active.size()) == j - i, "report: layer ", l, " routed ",
                    st.token_active.size(), " tokens for ", j - i, " images (one token per image expected)");
      auto& col = r.active_per_layer[l];
      col.insert(col.end(), st.token_active.begin(), st.token_active.end());
      for (int64_t k = 0; k < j - i; ++k) {
        r.active[i + k] += st.token_active[k];
        r.entropy[i + k] += st.token_entropy[k];
      }
    }
  }
  const double layers = static_cast<double>(r.active_per_layer.size());
  for (int64_t k = 0; k < n; ++k) {
    r.active[k] /= layers;
    r.entropy[k] /= layers;
  }
  return r;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> easy_and_hard(const ImageRouting& r, int64_t n) {
  std::vector<int64_t> order(r.active.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (r.active[a] != r.active[b]) return r.active[a] < r.active[b];
    return r.entropy[a] < r.entropy[b];
  });
  const int64_t total = static_cast<int64_t>(order.size());
  const int64_t k = std::min(n, total / 2);
  std::vector<int64_t> easy(order.begin(), order.begin() + k);
  std::vector<int64_t> hard(order.rbegin(), order.rbegin() + k);
  return {easy, hard};
}

std::vector<std::string> class_names(const std::string& dataset, int64_t classes) {
  if (dataset == "fashion-mnist" && classes == 10)
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  if (dataset == "cifar10" && classes == 10)
    return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  std::vector<std::string> out;
  for (int64_t c = 0; c < classes; ++c) out.push_back(std::to_string(c));
  return out;
}

}  // namespace dynamoe::report
