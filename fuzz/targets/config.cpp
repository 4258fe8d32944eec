// A config file and `--set` overrides: the first part is the YAML, each further line of the second
// part one "key=value" override. A config that parses is written back as YAML and parsed again.
#include "../fuzz_target.h"

#include <sstream>

#include "dynamoe/config/config.h"

DYNAMOE_FUZZ_TARGET(config) {
  using namespace dynamoe;
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 2);
  std::vector<std::string> overrides;
  std::istringstream lines(parts[1]);
  for (std::string line; std::getline(lines, line);) overrides.push_back(line);
  fuzz::expect_clean([&] {
    config::Config c = config::parse_config(parts[0], "fuzz.yaml", overrides);
    (void)config::parse_config(c.to_yaml(), "fuzz.yaml (written back)");
  });
}
