// A token corpus folder: meta.json, train.bin and val.bin are the input's three parts; the folder
// is opened with and without an expected tokenizer.
#include "../fuzz_target.h"

#include "dynamoe/data/token_file.h"

DYNAMOE_FUZZ_TARGET(token_corpus) {
  using namespace dynamoe;
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 3);
  fuzz::scratch_file("meta.json", parts[0]);
  fuzz::scratch_file("train.bin", parts[1]);
  fuzz::scratch_file("val.bin", parts[2]);
  fuzz::expect_clean([&] { (void)data::open_token_corpus(fuzz::scratch_dir()); });
  fuzz::expect_clean([&] { (void)data::open_token_corpus(fuzz::scratch_dir(), "gpt2"); });
}
