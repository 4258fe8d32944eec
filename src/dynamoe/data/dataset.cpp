#include "dynamoe/data/dataset.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>

#include "dynamoe/data/cifar.h"
#include "dynamoe/data/idx.h"
#include "dynamoe/util/error.h"

namespace dynamoe::data {
namespace fs = std::filesystem;
namespace {

TensorDataset to_tensors(ImageSet&& s, int64_t limit) {
  int64_t n = limit > 0 ? std::min(limit, s.n) : s.n;
  TensorDataset d;
  d.images = at::from_blob(s.pixels.data(), {s.n, s.channels, s.height, s.width}, at::kByte)
                 .slice(0, 0, n)
                 .clone();  // [N, C, H, W]
  d.labels = at::from_blob(s.labels.data(), {s.n}, at::kByte).slice(0, 0, n).to(at::kLong);  // [N]
  return d;
}

std::vector<std::string> cifar_files(const std::string& dir, bool train) {
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) files.push_back((fs::path(dir) / str("data_batch_", i, ".bin")).string());
  } else {
    files.push_back((fs::path(dir) / "test_batch.bin").string());
  }
  for (const auto& f : files)
    DYNAMOE_CHECK(fs::exists(f), "data: CIFAR-10 file '", f, "' is missing (data.path must hold ",
                  "data_batch_1..5.bin and test_batch.bin)");
  return files;
}

/// Every label of a split is below `classes`: a one-line error names the file, the first
/// offending example and its value.
void check_labels(const at::Tensor& labels, int64_t classes, const std::string& file, const std::string& why) {
  const at::Tensor bad = labels.ge(classes).nonzero();
  if (bad.size(0) == 0) return;
  const int64_t i = bad[0][0].item<int64_t>();
  throw Error(str("data: ", file, ": label ", labels[i].item<int64_t>(), " of example ", i, " is not a class of ",
                  why, " (0..", classes - 1, "); ", bad.size(0), " labels are out of range"));
}

}  // namespace

DataSplits load_data(const config::DataConfig& cfg) {
  DataSplits out;
  ImageSet train, test;
  std::string train_labels, test_labels;  // the files, for errors
  if (cfg.dataset == "cifar10") {
    out.source = cfg.path;
    train_labels = (fs::path(cfg.path) / "data_batch_*.bin").string();
    test_labels = (fs::path(cfg.path) / "test_batch.bin").string();
    train = read_cifar10(cifar_files(cfg.path, true));
    test = read_cifar10(cifar_files(cfg.path, false));
  } else {
    out.source = cfg.path.empty() ? (fs::path(cfg.dir) / cfg.dataset).string() : cfg.path;
    if (!fs::exists(out.source)) {
      throw Error(str("data: dataset folder '", out.source, "' does not exist; run `dynamoe data fetch ",
                      cfg.dataset, (cfg.dir == "data" ? std::string() : " --data-dir " + cfg.dir), "` first"));
    }
    IdxSplitPaths p = idx_paths(out.source);
    train_labels = p.train_labels;
    test_labels = p.test_labels;
    train = read_idx_images(p.train_images, p.train_labels);
    test = read_idx_images(p.test_images, p.test_labels);
  }
  DYNAMOE_CHECK(train.channels == test.channels && train.height == test.height && train.width == test.width,
                "data: train images are ", train.channels, "x", train.height, "x", train.width,
                " but test images are ", test.channels, "x", test.height, "x", test.width, " (", out.source, ")");
  DYNAMOE_CHECK(train.n > 0 && test.n > 0, "data: empty split in '", out.source, "'");
  out.train = to_tensors(std::move(train), cfg.train_limit);
  out.test = to_tensors(std::move(test), cfg.test_limit);

  InputSpec& spec = out.spec;
  spec.channels = out.train.images.size(1);
  spec.height = out.train.images.size(2);
  spec.width = out.train.images.size(3);
  // The published data sets have 10 classes; a folder of IDX files has those of its train labels.
  const bool ten = cfg.dataset == "mnist" || cfg.dataset == "fashion-mnist" || cfg.dataset == "cifar10";
  spec.num_classes = ten ? 10 : out.train.labels.max().item<int64_t>() + 1;
  const std::string why = ten ? cfg.dataset : "the train labels";
  check_labels(out.train.labels, spec.num_classes, train_labels, why);
  check_labels(out.test.labels, spec.num_classes, test_labels, why);
  at::Tensor x = out.train.images.transpose(0, 1).reshape({spec.channels, -1}).to(at::kFloat).div_(255.0);
  const double count = static_cast<double>(x.size(1));
  at::Tensor mean = x.sum(1, false, at::kDouble) / count;                                        // [C]
  at::Tensor var = (x.square().sum(1, false, at::kDouble) / count - mean.square()) * (count / (count - 1));
  at::Tensor std = var.clamp_min(1e-12).sqrt();                                                  // [C]
  spec.mean.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + spec.channels);
  spec.std.assign(std.data_ptr<double>(), std.data_ptr<double>() + spec.channels);
  return out;
}

EpochSampler::EpochSampler(int64_t n, int64_t batch_size, uint64_t seed)
    : n_(n), batch_size_(batch_size), seed_(seed) {
  DYNAMOE_CHECK(n > 0 && batch_size > 0, "sampler: need n > 0 and batch_size > 0, got ", n, ", ", batch_size);
}

at::Tensor EpochSampler::batch(int64_t epoch, int64_t b) {
  DYNAMOE_CHECK(b >= 0 && b < batches_per_epoch(), "sampler: batch ", b, " out of range");
  if (epoch != cached_epoch_) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ull + static_cast<uint64_t>(epoch) + 1);
    perm_ = at::randperm(n_, gen, at::TensorOptions().dtype(at::kLong));
    cached_epoch_ = epoch;
  }
  return perm_.slice(0, b * batch_size_, std::min(n_, (b + 1) * batch_size_));
}

}  // namespace dynamoe::data
