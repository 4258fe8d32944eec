// Multiple-choice JSONL (read_multiple_choice).
#include "../fuzz_target.h"

#include "dynamoe/eval/multiple_choice.h"

DYNAMOE_FUZZ_TARGET(multiple_choice) {
  using namespace dynamoe;
  const std::string path = fuzz::scratch_file("items.jsonl", fuzz::text(data, size));
  fuzz::expect_clean([&] { (void)eval::read_multiple_choice(path); });
}
