// safetensors from bytes (parse_safetensors) and from a file (check_safetensors_file, then
// load_safetensors, as the checkpoint loaders call them). A parsed file's tensors are read whole.
#include "../fuzz_target.h"

#include <ATen/ATen.h>

#include "dynamoe/io/safetensors.h"

DYNAMOE_FUZZ_TARGET(safetensors) {
  using namespace dynamoe;
  const std::string bytes = fuzz::text(data, size);
  fuzz::expect_clean([&] {
    io::SafetensorsFile f = io::parse_safetensors(bytes, "fuzz.safetensors");
    for (const std::string& name : f.names) (void)f.at(name).sum();
  });
  const std::string path = fuzz::scratch_file("model.safetensors", bytes);
  fuzz::expect_clean([&] {
    io::check_safetensors_file(path);
    (void)io::load_safetensors(path);
  });
}
