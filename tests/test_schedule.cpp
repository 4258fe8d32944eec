// Layer-wise capacity schedules: the exact table for every schedule (expected values computed
// independently in Python with exact fractions: the script is in docs/schedules.md), rounding of
// half-way cases, total_experts rescaling, and errors.
#include <gtest/gtest.h>

#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "dynamoe/moe/schedule.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

using dynamoe::ConfigError;
using dynamoe::moe::schedule_experts;
using dynamoe::moe::schedule_names;
using dynamoe::moe::ScheduleOptions;
using V = std::vector<int64_t>;

namespace {

ScheduleOptions opts(const std::string& name, int64_t total = 0, int64_t e_min = 2, int64_t e_max = 8) {
  ScheduleOptions o;
  o.name = name;
  o.e_min = e_min;
  o.e_max = e_max;
  o.total_experts = total;
  return o;
}

using dynamoe::testutil::config_error;

struct Row {
  const char* name;
  int64_t n_layers;
  V expected;
};

}  // namespace

TEST(Schedule, Names) {
  EXPECT_EQ(schedule_names(), (std::vector<std::string>{"ascending", "descending", "hourglass", "pyramid", "uniform", "wave"}));
}

// e_min = 2, e_max = 8, no total.
TEST(Schedule, TableEmin2Emax8) {
  const std::vector<Row> rows = {
      {"uniform", 1, {8}},
      {"descending", 1, {8}},
      {"ascending", 1, {2}},
      {"pyramid", 1, {2}},
      {"hourglass", 1, {8}},
      {"wave", 1, {5}},
      {"uniform", 2, {8, 8}},
      {"descending", 2, {8, 2}},
      {"ascending", 2, {2, 8}},
      {"pyramid", 2, {2, 2}},
      {"hourglass", 2, {8, 8}},
      {"wave", 2, {5, 5}},
      {"uniform", 4, {8, 8, 8, 8}},
      {"descending", 4, {8, 6, 4, 2}},
      {"ascending", 4, {2, 4, 6, 8}},
      {"pyramid", 4, {2, 6, 6, 2}},
      {"hourglass", 4, {8, 4, 4, 8}},
      {"wave", 4, {5, 8, 2, 5}},
      {"uniform", 6, {8, 8, 8, 8, 8, 8}},
      {"descending", 6, {8, 7, 6, 4, 3, 2}},
      {"ascending", 6, {2, 3, 4, 6, 7, 8}},
      {"pyramid", 6, {2, 4, 7, 7, 4, 2}},
      {"hourglass", 6, {8, 6, 3, 3, 6, 8}},
      {"wave", 6, {5, 8, 7, 3, 2, 5}},
      {"uniform", 8, {8, 8, 8, 8, 8, 8, 8, 8}},
      {"descending", 8, {8, 7, 6, 5, 5, 4, 3, 2}},
      {"ascending", 8, {2, 3, 4, 5, 5, 6, 7, 8}},
      {"pyramid", 8, {2, 4, 5, 7, 7, 5, 4, 2}},
      {"hourglass", 8, {8, 6, 5, 3, 3, 5, 6, 8}},
      {"wave", 8, {5, 7, 8, 6, 4, 2, 3, 5}},
  };
  for (const Row& row : rows)
    EXPECT_EQ(schedule_experts(opts(row.name), row.n_layers), row.expected) << row.name << " L=" << row.n_layers;
}

// Half-way values round up: descending L=5 has 6.5 and 3.5 exactly; wave L=13 has 5 + 3 sin(pi/6)
// = 6.5, where std::sin gives 0.49999999999999994; wave with e_min + e_max odd sits on 5.5 at
// sin = 0 (x = 0, 0.5, 1, where std::sin(2 pi) is -2.4e-16).
TEST(Schedule, HalfWayRoundsUp) {
  EXPECT_EQ(schedule_experts(opts("descending"), 5), (V{8, 7, 5, 4, 2}));
  EXPECT_EQ(schedule_experts(opts("ascending"), 5), (V{2, 4, 5, 7, 8}));
  EXPECT_EQ(schedule_experts(opts("pyramid"), 5), (V{2, 5, 8, 5, 2}));
  EXPECT_EQ(schedule_experts(opts("hourglass"), 5), (V{8, 5, 2, 5, 8}));
  EXPECT_EQ(schedule_experts(opts("wave"), 13), (V{5, 7, 8, 8, 8, 7, 5, 4, 2, 2, 2, 4, 5}));
  EXPECT_EQ(schedule_experts(opts("wave", 0, 2, 9), 5), (V{6, 9, 6, 2, 6}));
}

TEST(Schedule, WaveFrequency) {
  ScheduleOptions o = opts("wave");
  o.wave_frequency = 2.0;
  EXPECT_EQ(schedule_experts(o, 8), (V{5, 8, 4, 3, 7, 6, 2, 5}));
  EXPECT_EQ(schedule_experts(o, 5), (V{5, 5, 5, 5, 5}));  // every x is a half cycle
  EXPECT_EQ(schedule_experts(opts("wave"), 9), (V{5, 7, 8, 7, 5, 3, 2, 3, 5}));
}

TEST(Schedule, EqualRangeAndClamp) {
  for (const auto& name : schedule_names()) {
    EXPECT_EQ(schedule_experts(opts(name, 0, 4, 4), 6), V(6, 4)) << name;
    EXPECT_EQ(schedule_experts(opts(name, 0, 1, 1), 3), V(3, 1)) << name;
    for (int64_t L : {1, 2, 3, 7, 16, 33}) {
      for (int64_t e : schedule_experts(opts(name, 0, 3, 11), L)) {
        EXPECT_GE(e, 3);
        EXPECT_LE(e, 11);
      }
    }
  }
}

TEST(Schedule, TotalExpertsTable) {
  struct TotalRow {
    const char* name;
    int64_t n_layers, total;
    V expected;
  };
  const std::vector<TotalRow> rows = {
      // B = 4 L
      {"uniform", 1, 4, {4}},
      {"wave", 1, 4, {4}},
      {"descending", 2, 8, {6, 2}},
      {"pyramid", 2, 8, {4, 4}},
      {"uniform", 4, 16, {4, 4, 4, 4}},
      {"descending", 4, 16, {6, 5, 3, 2}},
      {"ascending", 4, 16, {2, 3, 5, 6}},
      {"pyramid", 4, 16, {2, 6, 6, 2}},
      {"hourglass", 4, 16, {5, 3, 3, 5}},
      {"wave", 4, 16, {4, 6, 2, 4}},
      {"uniform", 6, 24, {4, 4, 4, 4, 4, 4}},
      {"descending", 6, 24, {6, 5, 4, 4, 3, 2}},
      {"ascending", 6, 24, {2, 3, 4, 4, 5, 6}},
      {"pyramid", 6, 24, {2, 4, 6, 6, 4, 2}},
      {"hourglass", 6, 24, {6, 4, 2, 2, 4, 6}},
      {"wave", 6, 24, {4, 6, 5, 3, 2, 4}},
      {"uniform", 8, 32, {4, 4, 4, 4, 4, 4, 4, 4}},
      {"descending", 8, 32, {6, 6, 5, 4, 4, 3, 2, 2}},
      {"ascending", 8, 32, {2, 2, 3, 4, 4, 5, 6, 6}},
      {"pyramid", 8, 32, {2, 3, 5, 6, 6, 5, 3, 2}},
      {"hourglass", 8, 32, {6, 5, 3, 2, 2, 3, 5, 6}},
      {"wave", 8, 32, {4, 6, 6, 5, 3, 2, 2, 4}},
      // B = 7 L + 3: uneven, ties of the remainders go to the lower layer index
      {"uniform", 2, 17, {9, 8}},
      {"uniform", 8, 59, {8, 8, 8, 7, 7, 7, 7, 7}},
      {"descending", 4, 31, {13, 9, 6, 3}},
      {"pyramid", 4, 31, {4, 12, 11, 4}},
      {"hourglass", 4, 31, {11, 5, 5, 10}},
      {"descending", 6, 45, {12, 10, 8, 7, 5, 3}},
      {"pyramid", 6, 45, {3, 8, 12, 12, 7, 3}},
      {"hourglass", 6, 45, {11, 8, 4, 4, 7, 11}},
      {"wave", 6, 45, {8, 12, 10, 5, 3, 7}},
      {"descending", 8, 59, {12, 11, 9, 8, 7, 5, 4, 3}},
      {"ascending", 8, 59, {3, 4, 5, 7, 8, 9, 11, 12}},
      {"pyramid", 8, 59, {3, 6, 9, 12, 11, 9, 6, 3}},
      {"hourglass", 8, 59, {11, 9, 6, 4, 4, 6, 8, 11}},
      {"wave", 8, 59, {7, 11, 12, 9, 6, 3, 4, 7}},
      // B = 10 L: not clamped to e_max = 8
      {"descending", 4, 40, {16, 12, 8, 4}},
      {"pyramid", 8, 80, {4, 8, 12, 16, 16, 12, 8, 4}},
      {"hourglass", 8, 80, {15, 12, 8, 5, 5, 8, 12, 15}},
      {"wave", 8, 80, {10, 15, 16, 13, 7, 4, 5, 10}},
      // B = L: one expert each
      {"descending", 8, 8, {1, 1, 1, 1, 1, 1, 1, 1}},
      {"wave", 6, 6, {1, 1, 1, 1, 1, 1}},
  };
  for (const TotalRow& row : rows) {
    const V e = schedule_experts(opts(row.name, row.total), row.n_layers);
    EXPECT_EQ(e, row.expected) << row.name << " L=" << row.n_layers << " B=" << row.total;
    EXPECT_EQ(std::accumulate(e.begin(), e.end(), int64_t{0}), row.total) << row.name;
  }
}

TEST(Schedule, TotalExpertsSumsAndMinimumOne) {
  for (const auto& name : schedule_names()) {
    for (int64_t L : {1, 2, 3, 5, 8, 13, 24}) {
      for (int64_t B : {L, L + 1, 2 * L + 1, 4 * L, 9 * L + 5}) {
        ScheduleOptions o = opts(name, B, 1, 16);
        o.wave_frequency = 1.5;
        const V e = schedule_experts(o, L);
        ASSERT_EQ(static_cast<int64_t>(e.size()), L);
        EXPECT_EQ(std::accumulate(e.begin(), e.end(), int64_t{0}), B) << name << " L=" << L << " B=" << B;
        for (int64_t x : e) EXPECT_GE(x, 1) << name << " L=" << L << " B=" << B;
      }
    }
  }
}

// A layer whose share is below 1 gets exactly 1 and the others share the rest: descending with
// e_min = 1, e_max = 8 on 2 layers is v = {8, 1}; B = 3 shares {2.67, 0.33} -> {2, 1} (plain
// largest remainder would give {3, 0}).
TEST(Schedule, TotalExpertsShareBelowOne) {
  EXPECT_EQ(schedule_experts(opts("descending", 2, 1, 8), 2), (V{1, 1}));
  EXPECT_EQ(schedule_experts(opts("descending", 3, 1, 8), 2), (V{2, 1}));
  EXPECT_EQ(schedule_experts(opts("descending", 4, 1, 8), 3), (V{2, 1, 1}));
}

TEST(Schedule, Errors) {
  EXPECT_NE(config_error([] { schedule_experts(opts("spiral"), 4); }).find("valid: ascending, descending, hourglass, pyramid, uniform, wave"),
            std::string::npos);
  EXPECT_NE(config_error([] { schedule_experts(opts("uniform", 0, 0, 8), 4); }).find("e_min = 0"), std::string::npos);
  EXPECT_NE(config_error([] { schedule_experts(opts("uniform", 0, -3, 8), 4); }).find("e_min = -3"), std::string::npos);
  const std::string range = config_error([] { schedule_experts(opts("uniform", 0, 9, 8), 4); });
  EXPECT_NE(range.find("e_min = 9"), std::string::npos);
  EXPECT_NE(range.find("e_max = 8"), std::string::npos);
  EXPECT_NE(config_error([] { schedule_experts(opts("uniform"), 0); }).find("n_layers = 0"), std::string::npos);
  EXPECT_NE(config_error([] { schedule_experts(opts("pyramid", 3), 4); }).find("total_experts = 3"), std::string::npos);
  EXPECT_NE(config_error([] { schedule_experts(opts("pyramid", -1), 4); }).find("total_experts = -1"),
            std::string::npos);
  ScheduleOptions o = opts("wave");
  o.wave_frequency = std::numeric_limits<double>::infinity();
  EXPECT_NE(config_error([&] { schedule_experts(o, 4); }).find("wave_frequency"), std::string::npos);
}
