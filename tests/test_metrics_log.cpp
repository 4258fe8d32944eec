// Metrics rows: a write that fails (a full disk) is an error naming the file, not a silent gap.
#include <gtest/gtest.h>

#include <filesystem>

#include "dynamoe/train/metrics_log.h"
#include "test_util.h"

using namespace dynamoe;

TEST(MetricsLog, AFullDiskIsAnErrorNamingTheFile) {
  testutil::TempDir tmp;
  std::filesystem::create_symlink("/dev/full", tmp / "metrics.jsonl");  // every write: ENOSPC
  train::MetricsLog log(tmp.str(), -1);
  testutil::expect_error([&] { log.write({{"step", 1}, {"split", "train"}, {"loss", 0.5}}); },
                         {"could not write", "metrics.jsonl", "No space left on device"});
}

TEST(MetricsLog, TheLogOfOtherRanksWritesNothing) {
  train::MetricsLog log;
  EXPECT_NO_THROW(log.write({{"step", 1}, {"split", "train"}}));
}
