// IDX files, plain and gzip (read_idx), and an image/label pair (read_idx_images) made of the
// input's two parts.
#include "../fuzz_target.h"

#include "dynamoe/data/idx.h"

DYNAMOE_FUZZ_TARGET(idx) {
  using namespace dynamoe;
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 2);
  const std::string whole = fuzz::scratch_file("whole-idx", fuzz::text(data, size));
  fuzz::expect_clean([&] { (void)data::read_idx(whole); });
  const std::string images = fuzz::scratch_file("images-idx", parts[0]);
  const std::string labels = fuzz::scratch_file("labels-idx", parts[1]);
  fuzz::expect_clean([&] { (void)data::read_idx_images(images, labels); });
}
