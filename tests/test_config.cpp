// Config: parsing, overrides, validation errors that name the key and value, round trips.
#include <gtest/gtest.h>

#include <filesystem>

#include "dynamoe/config/config.h"
#include "dynamoe/moe/routers/top_p.h"
#include "dynamoe/moe/routers/tsallis_hybrid.h"
#include "dynamoe/moe/schedule.h"
#include "dynamoe/sweep/sweep_spec.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

using dynamoe::ConfigError;
using dynamoe::config::Config;
using dynamoe::config::load_config;
using dynamoe::config::parse_config;

namespace {

using dynamoe::testutil::config_error;

}  // namespace

TEST(Config, DefaultsAreValid) {
  Config c = parse_config("", "test");
  EXPECT_EQ(c.model.kind, "mlp");
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);
}

TEST(Config, NestedYamlAndOverrides) {
  Config c = parse_config("model:\n  hidden: [64, 32]\n  activation: gelu\ntrain:\n  lr: 0.01\n  steps: 7\n", "x.yaml",
                          {"train.lr=3e-4", "model.hidden=[16]", "train.nesterov=true"});
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{16}));
  EXPECT_EQ(c.model.activation, "gelu");
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_TRUE(c.train.nesterov);
}

TEST(Config, UnknownKeyNamesKeyAndSuggests) {
  std::string m = config_error([] { parse_config("train:\n  lrr: 0.1\n", "x.yaml"); });
  EXPECT_NE(m.find("unknown key 'train.lrr'"), std::string::npos) << m;
  EXPECT_NE(m.find("x.yaml:2"), std::string::npos) << m;
  EXPECT_NE(m.find("did you mean 'train.lr'"), std::string::npos) << m;
  m = config_error([] { parse_config("", "x", {"model.widht=3"}); });
  EXPECT_NE(m.find("unknown key 'model.widht'"), std::string::npos) << m;
  m = config_error([] { parse_config("bogus: 1\n", "x"); });
  EXPECT_NE(m.find("unknown key 'bogus'"), std::string::npos) << m;
  // A section given a value names the section (it once suggested 'moe.k' for 'model: 5').
  m = config_error([] { parse_config("model: 5\n", "x.yaml"); });
  EXPECT_NE(m.find("'model' (x.yaml:1) is a section of keys (model."), std::string::npos) << m;
  EXPECT_EQ(m.find("moe.k"), std::string::npos) << m;
  m = config_error([] { parse_config("", "x", {"train=3"}); });
  EXPECT_NE(m.find("'train' (--set train=3) is a section of keys"), std::string::npos) << m;
}

TEST(Config, WrongTypeNamesKeyAndValue) {
  std::string m = config_error([] { parse_config("train:\n  lr: fast\n", "x.yaml"); });
  EXPECT_NE(m.find("train.lr"), std::string::npos) << m;
  EXPECT_NE(m.find("'fast'"), std::string::npos) << m;
  m = config_error([] { parse_config("", "x", {"train.batch_size=12.5"}); });
  EXPECT_NE(m.find("train.batch_size: expected an integer, got '12.5'"), std::string::npos) << m;
  m = config_error([] { parse_config("model:\n  hidden: [1, a]\n", "x"); });
  EXPECT_NE(m.find("model.hidden"), std::string::npos) << m;
  m = config_error([] { parse_config("train: 3\n", "x"); });
  EXPECT_NE(m.find("'train'"), std::string::npos) << m;
}

TEST(Config, OutOfRangeNamesKeyAndValue) {
  std::string m = config_error([] { parse_config("", "x", {"train.lr=-1"}); });
  EXPECT_NE(m.find("train.lr = -1"), std::string::npos) << m;
  EXPECT_NE(m.find("out of range"), std::string::npos) << m;
  m = config_error([] { parse_config("", "x", {"model.dropout=1.5"}); });
  EXPECT_NE(m.find("model.dropout = 1.5"), std::string::npos) << m;
  m = config_error([] { parse_config("", "x", {"model.activation=swish"}); });
  EXPECT_NE(m.find("model.activation = 'swish' is not one of"), std::string::npos) << m;
  m = config_error([] { parse_config("", "x", {"model.hidden=[64, 0]"}); });
  EXPECT_NE(m.find("model.hidden"), std::string::npos) << m;
  m = config_error([] { parse_config("", "x", {"train.lr"}); });
  EXPECT_NE(m.find("key=value"), std::string::npos) << m;
}

TEST(Config, InvalidYamlNamesFileAndLine) {
  std::string m = config_error([] { parse_config("train:\n  lr: [1,\n", "bad.yaml"); });
  EXPECT_NE(m.find("bad.yaml"), std::string::npos) << m;
}

TEST(Config, ResolvedYamlRoundTrips) {
  Config a = parse_config("", "x", {"train.lr=0.00025", "model.hidden=[7, 9]", "model.kind=cnn", "train.seed=5"});
  Config b = parse_config(a.to_yaml(), "resolved");
  EXPECT_EQ(a.to_yaml(), b.to_yaml());
  EXPECT_DOUBLE_EQ(b.train.lr, 0.00025);
  EXPECT_EQ(b.model.hidden, (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(b.model.kind, "cnn");
}

TEST(Config, ShippedConfigsAreValid) {
  int n = 0, sweeps = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dynamoe::testutil::source_dir() + "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    if (e.path().parent_path().filename() == "studies") {
      // a sweep file: every run of its grid must resolve to a valid config
      EXPECT_NO_THROW({
        const auto spec = dynamoe::sweep::load_sweep(e.path().string());
        EXPECT_FALSE(dynamoe::sweep::resolve_runs(spec, dynamoe::sweep::expand(spec)).empty());
      }) << e.path();
      ++sweeps;
    } else {
      EXPECT_NO_THROW(load_config(e.path().string())) << e.path();
    }
    ++n;
  }
  EXPECT_GT(n, 0);
  EXPECT_GT(sweeps, 0);
}

TEST(ConfigCli, BadConfigExitsTwoAndWritesNothing) {
  dynamoe::testutil::TempDir tmp;
  const std::string runs = tmp / "runs";
  auto r = dynamoe::testutil::run_command(dynamoe::testutil::cli() + " train --config " +
                                         dynamoe::testutil::source_dir() + "/configs/mlp_fashion.yaml --set train.lr=-3 --set train.runs_dir=" +
                                         runs + " --name x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("train.lr = -3"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "one line: " << r.output;
  EXPECT_FALSE(std::filesystem::exists(runs));
  dynamoe::write_file_atomic(tmp / "bad.yaml", "train:\n  optimiser: adam\n");
  r = dynamoe::testutil::run_command(dynamoe::testutil::cli() + " train --config " + (tmp / "bad.yaml") +
                                    " --set train.runs_dir=" + runs);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown key 'train.optimiser'"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(runs));
}

TEST(ConfigCli, ReferenceDocIsCurrent) {
  auto r = dynamoe::testutil::run_command(dynamoe::testutil::cli() + " config --reference");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, dynamoe::read_file(dynamoe::testutil::source_dir() + "/docs/config.md"))
      << "docs/config.md is stale: regenerate it with `build/dynamoe config --reference > docs/config.md`";
}

// The moe group: gate, router and schedule are kinds with their own options.
TEST(Config, AKindBringsItsOwnOptions) {
  Config c = parse_config("moe:\n  router: {kind: top_p, p: 0.6, max_k: 3}\n  layers: {schedule: wave, frequency: 2.0}\n",
                          "x.yaml");
  EXPECT_EQ(c.moe.router.kind(), "top_p");
  EXPECT_DOUBLE_EQ(c.moe.router.as<dynamoe::moe::TopPOptions>().p, 0.6);
  EXPECT_EQ(c.moe.router.as<dynamoe::moe::TopPOptions>().max_k, 3);
  EXPECT_DOUBLE_EQ(dynamoe::moe::schedule_options(c.moe.layers.schedule, 2, 8, 0).wave_frequency, 2.0);
  // another router's option is an error listing the valid ones
  std::string m = config_error([] { parse_config("moe:\n  router: {kind: dynamoe, k: 2}\n", "x.yaml"); });
  EXPECT_NE(m.find("unknown key 'moe.router.k' (x.yaml:2)"), std::string::npos) << m;
  EXPECT_NE(m.find("router 'dynamoe' has the options: temperature, sigma, tau"), std::string::npos) << m;
  // an override may change the kind, and then set that kind's options
  c = parse_config("moe:\n  router: {kind: top_k}\n", "x.yaml", {"moe.router.kind=tsallis_hybrid", "moe.router.q=1.5"});
  EXPECT_EQ(c.moe.router.kind(), "tsallis_hybrid");
  EXPECT_DOUBLE_EQ(c.moe.router.as<dynamoe::moe::TsallisHybridOptions>().q, 1.5);
  EXPECT_DOUBLE_EQ(c.moe.losses.tsallis_q, 1.1);  // the loss's q is its own key
  // the resolved YAML parses back to the same configuration
  EXPECT_EQ(parse_config(c.to_yaml(), "resolved").to_yaml(), c.to_yaml());
  m = config_error([] { parse_config("", "t", {"moe.router.kind=top_q"}); });
  EXPECT_NE(m.find("moe.router.kind = 'top_q' is not one of"), std::string::npos) << m;
}

TEST(Config, AMovedKeyNamesItsNewKey) {
  std::string m = config_error([] { parse_config("moe:\n  router: top_k\n  k: 2\n", "old.yaml"); });
  EXPECT_NE(m.find("moe.router (old.yaml:2) is now moe.router.kind"), std::string::npos) << m;
  m = config_error([] { parse_config("", "t", {"moe.k=2"}); });
  EXPECT_NE(m.find("moe.k (--set moe.k=2) is now moe.router.k"), std::string::npos) << m;
  m = config_error([] { parse_config("moe:\n  tsallis_q: 1.2\n", "old.yaml"); });
  EXPECT_NE(m.find("moe.router.q (the router) and moe.losses.tsallis_q (the loss)"), std::string::npos) << m;
  m = config_error([] { parse_config("train:\n  schedule: cosine\n", "old.yaml"); });
  EXPECT_NE(m.find("train.schedule (old.yaml:2) is now train.lr_schedule"), std::string::npos) << m;
}

TEST(Config, ARouterThatNeedsTokenIdsIsRefusedForImageModels) {
  std::string m = config_error([] { parse_config("", "t", {"model.kind=moe_mlp", "moe.router.kind=hash"}); });
  EXPECT_NE(m.find("moe.router.kind = 'hash' routes by token id"), std::string::npos) << m;
}

// `--config <a directory>` used to train with every default (a directory reads as empty text);
// a directory or a device is now a one-line error before anything is written.
TEST(Config, ADirectoryOrADeviceIsNotAConfigFile) {
  dynamoe::testutil::TempDir dir;
  dynamoe::testutil::expect_error([&] { load_config(dir.str()); }, {dir.str(), "it is a directory"});
  dynamoe::testutil::expect_error([] { load_config("/dev/zero"); }, {"/dev/zero", "not a regular file"});
  const auto r = dynamoe::testutil::run_command("cd " + dir.str() + " && " + dynamoe::testutil::cli() + " train --config " + dir.str() +
                                       " --name d");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("it is a directory"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("runs")));
}

// Expert counts no layer can honour are one-line errors, not silent clamps.
TEST(Config, RouterCountsAboveTheLayersAreErrors) {
  const std::string moe = "model: {kind: moe_mlp}\nmoe: {layers: {e_min: 2, e_max: 8}, router: ";
  EXPECT_NE(config_error([&] { parse_config(moe + "{kind: top_k, k: 9}}\n", "k.yaml"); })
                .find("moe.router.k = 9 is more than the 8 experts of the largest layer"),
            std::string::npos);
  EXPECT_NE(config_error([&] { parse_config(moe + "{kind: top_p, min_k: 3, max_k: 2}}\n", "p.yaml"); })
                .find("moe.router.min_k = 3 is above moe.router.max_k = 2"),
            std::string::npos);
  EXPECT_NO_THROW(parse_config(moe + "{kind: top_k, k: 8}}\n", "ok.yaml"));
}
