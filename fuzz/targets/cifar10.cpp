// CIFAR-10 binary batches: the input's parts are the batch files, read in order.
#include "../fuzz_target.h"

#include "dynamoe/data/cifar.h"

DYNAMOE_FUZZ_TARGET(cifar10) {
  using namespace dynamoe;
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 2);
  std::vector<std::string> files;
  for (size_t i = 0; i < parts.size(); ++i)
    if (i == 0 || !parts[i].empty()) files.push_back(fuzz::scratch_file("batch_" + std::to_string(i) + ".bin", parts[i]));
  fuzz::expect_clean([&] { (void)data::read_cifar10(files); });
}
