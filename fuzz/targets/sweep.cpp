// A sweep file: parsed, expanded (the grid cap holds before anything is built) and, when it has
// at most 4 runs, every run's config resolved. A relative `base:` names a file of the scratch folder,
// which holds a valid config (base.yaml).
#include "../fuzz_target.h"

#include "dynamoe/sweep/sweep_spec.h"

DYNAMOE_FUZZ_TARGET(sweep) {
  using namespace dynamoe;
  static const std::string base = fuzz::scratch_file("base.yaml", "model:\n  kind: mlp\n  hidden: [8]\ntrain:\n  steps: 2\n");
  (void)base;
  const std::string file = fuzz::scratch_dir() + "/sweep.yaml";
  fuzz::expect_clean([&] {
    sweep::SweepSpec spec = sweep::parse_sweep(fuzz::text(data, size), file);
    std::vector<sweep::SweepRun> runs = sweep::expand(spec);
    if (runs.size() <= 4) (void)sweep::resolve_runs(spec, runs);
  });
}
