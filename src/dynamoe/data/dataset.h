#pragma once
// In-memory image datasets as tensors, and the deterministic epoch sampler whose position
// (epoch, batch) is all a checkpoint needs to resume the data stream exactly.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "dynamoe/config/config.h"
#include "dynamoe/data/input_spec.h"

namespace dynamoe::data {

/// Images and labels of one split.
struct TensorDataset {
  at::Tensor images;  ///< [N, C, H, W] uint8
  at::Tensor labels;  ///< [N] int64
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// The train and test splits and the input description derived from the training set.
struct DataSplits {
  TensorDataset train, test;
  InputSpec spec;  ///< shape, classes, per-channel mean/std of the training pixels
  std::string source;      ///< the folder the data came from
};

/// Loads the dataset named by cfg (fetched IDX folders, an explicit IDX folder or CIFAR-10
/// binaries). A missing dataset is an error that names the fetch command.
DataSplits load_data(const config::DataConfig& cfg);

/// Shuffles [0, n) once per epoch with a generator seeded by (seed, epoch): the order of a
/// given epoch never depends on what ran before it. The last batch of an epoch may be short.
class EpochSampler {
 public:
  EpochSampler(int64_t n, int64_t batch_size, uint64_t seed);
  int64_t batches_per_epoch() const { return (n_ + batch_size_ - 1) / batch_size_; }
  /// Indices [B] of batch `b` of epoch `epoch`.
  at::Tensor batch(int64_t epoch, int64_t b);

 private:
  int64_t n_, batch_size_;
  uint64_t seed_;
  int64_t cached_epoch_ = -1;
  at::Tensor perm_;
};

}  // namespace dynamoe::data
