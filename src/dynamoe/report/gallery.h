#pragma once
// Per-image routing on the test set: how many experts each test image activated (mean over
// the MoE layers) and how spread its router's probabilities were, from a run's final
// checkpoint. The report's gallery shows the easiest images (fewest experts) next to the
// hardest (most).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dynamoe::report {

struct ImageRouting {
  at::Tensor images;                   ///< [N, C, H, W] uint8, the test images
  std::vector<int64_t> labels, predictions;
  std::vector<double> active;          ///< [N] active experts per MoE layer, mean over layers
  std::vector<double> entropy;         ///< [N] routing entropy (nats), mean over layers
  std::vector<std::vector<int32_t>> active_per_layer;  ///< [L][N]
  std::string dataset;                 ///< data.dataset of the run
  std::string checkpoint;
};

/// Loads the newest checkpoint of `run_dir` with its data and routes the whole test split in
/// eval mode (no routing noise). Throws dynamoe::Error when the model has no MoE layer.
ImageRouting route_test_set(const std::string& run_dir);

/// Indices of the `n` images with the fewest active experts (ties: lower entropy first) and the
/// `n` with the most (ties: higher entropy first); the two lists do not overlap.
std::pair<std::vector<int64_t>, std::vector<int64_t>> easy_and_hard(const ImageRouting& r, int64_t n);

/// Class names of a dataset (Fashion-MNIST's garments; digits for MNIST; else "0".."K-1").
std::vector<std::string> class_names(const std::string& dataset, int64_t classes);

}  // namespace dynamoe::report
