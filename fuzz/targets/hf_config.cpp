// A Hugging Face config.json (parse_llama_config).
#include "../fuzz_target.h"

#include "dynamoe/models/hf/llama_config.h"

DYNAMOE_FUZZ_TARGET(hf_config) {
  using namespace dynamoe;
  fuzz::expect_clean([&] { (void)models::hf::parse_llama_config(fuzz::text(data, size)); });
}
