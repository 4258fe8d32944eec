#pragma once
// What a classifier's input looks like: image shape, classes and pixel normalisation.
#include <cstdint>
#include <vector>

namespace dynamoe::data {

struct InputSpec {
  int64_t channels = 1, height = 28, width = 28;
  int64_t num_classes = 10;
  std::vector<double> mean = {0.0}, std = {1.0};  ///< per-channel normalisation of [0,1] pixels
  int64_t features() const { return channels * height * width; }
};

}  // namespace dynamoe::data
