// The benchmark's correctness half: dynamoe's layer (grouped fp32, loop, grouped bf16) against
// the PyTorch HF loop of bench/peers.py, outputs and every gradient, through `dynamoe bench`
// on small shapes. (The timings it prints are not checked: speed is for benchmarks.)
#include <gtest/gtest.h>

#include <regex>

#include "dynamoe/bench/peer_process.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

using namespace dynamoe;
using namespace dynamoe::testutil;

TEST(Bench, EveryVariantMatchesTheHfLoopOnOutputsAndGradients) {
  const CommandResult r = run_command("cd " + source_dir() + " && OMP_WAIT_POLICY=PASSIVE " + cli() +
                                      " bench --sections main,fine,skew,bf16 --tokens 96 --rounds 1 --warmup 0 "
                                      "--threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // one line per dynamoe variant and shape: main x2 x (grouped, loop), fine x2 x2, skew x1, bf16 x1
  const std::regex line(R"(check (dynamoe [a-z0-9 ]+) vs HF loop \(fp32\).*max rel err ([0-9.e+-]+)  ok)");
  int checked = 0;
  for (std::sregex_iterator it(r.output.begin(), r.output.end(), line), end; it != end; ++it) {
    const double err = std::stod((*it)[2]);
    EXPECT_LE(err, (*it)[1].str().find("bf16") != std::string::npos ? 2e-2 : 1e-5) << (*it)[0];
    ++checked;
  }
  EXPECT_EQ(checked, 10) << r.output;
  EXPECT_EQ(r.output.find("FAILED"), std::string::npos) << r.output;
}

TEST(Bench, APeerErrorNamesTheCommandAndThePeerKeepsServing) {
  bench::PeerProcess py({"/usr/bin/python3", source_dir() + "/bench/peers.py", "--threads", "1"});
  expect_error([&] { py.call({{"cmd", "time"}, {"id", "nope"}, {"impl", "hf_loop"}, {"dtype", "float32"},
                               {"mode", "fwd"}, {"reps", 1}}); },
               {"failed 'time'", "nope"});
  EXPECT_TRUE(py.call({{"cmd", "hello"}}).value("ok", false));
}

// The ep section runs its 1, 2 and 4-process configurations to the end and prints the
// projection (the figures themselves are not checked).
TEST(Bench, TheMultiProcessSectionRunsEveryConfiguration) {
  const CommandResult r = run_command("OMP_WAIT_POLICY=PASSIVE " + cli() + " bench --sections ep --tokens 64 --rounds 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* row : {"        2  dp", "        2  ep", "        4  dp", "        4  ep", "projection (a model"})
    EXPECT_NE(r.output.find(row), std::string::npos) << row << "\n" << r.output;
  EXPECT_EQ(r.output.find("failed"), std::string::npos) << r.output;
}

// A 12-minute run is asked for by name: with no --sections the command prints its usage.
TEST(Bench, NoSectionsIsAUsageErrorNotATwelveMinuteRun) {
  const CommandResult r = run_command(cli() + " bench");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--sections LIST is required"), std::string::npos) << r.output;
}
