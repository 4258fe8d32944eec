// Fine-tuning on the command line (model.kind = finetune): a dense base LM pretrained on one
// synthetic domain, then LoRA and DynMoLE adapters trained on two domains. Checks: the new
// domain's perplexity falls, every base tensor in the run's checkpoint is bitwise the base's,
// `dynamoe mc` on the saved adapters reproduces the run's multiple-choice accuracy, 2
// data-parallel processes end where one ends, an interrupted run resumes to the same adapters, the continuation task's invariants, and
// one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>

#include "dynamoe/data/corpus.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/eval/continuation_task.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

namespace dynamoe {
namespace {
namespace fs = std::filesystem;
using testutil::run_command;

/// A fake unpacked Debian package of 50 documents of patterned sentences from `words`.
void make_domain(const testutil::TempDir& dir, const std::string& name, const std::string& subdir, const std::string& ext,
                 const std::vector<std::vector<std::string>>& words, uint32_t seed) {
  const std::string root = dir.file("pkg-" + name);
  std::mt19937 rng(seed);
  for (int d = 0; d < 50; ++d) {
    std::string text = "Title " + std::to_string(d) + "\n=========\n\n";
    for (int s = 0; s < 40; ++s)
      text += words[0][rng() % words[0].size()] + " " + words[1][rng() % words[1].size()] + " " +
              words[2][rng() % words[2].size()] + (s % 6 == 5 ? "\n\n" : " ");
    const fs::path p = fs::path(root) / subdir / ("m" + std::to_string(d) + ext);
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  data::FetchOptions o;
  o.data_dir = dir.file("data");
  data::convert_corpus_package(name, root, "test", "byte", o);
}

void make_domains(const testutil::TempDir& dir) {
  make_domain(dir, "python-docs", "usr/share/doc/python3.11/html/_sources/library", ".rst.txt",
              {{"the parser", "a module", "this function", "the loop"}, {"returns", "reads", "calls"},
               {"a list of names.", "the file.", "every value."}},
              5);
  make_domain(dir, "kernel-docs", "usr/share/doc/linux-doc-6.1/Documentation/driver-api", ".rst",
              {{"the driver", "each device", "an interrupt", "the scheduler"}, {"locks", "maps", "wakes"},
               {"the bus memory.", "all queued pages.", "its DMA buffer."}},
              6);
}

std::string common(const testutil::TempDir& dir) {
  return " --plain --set data.dir=" + dir.file("data") + " --set train.runs_dir=" + dir.file("runs") +
         " --set train.threads=1 --set train.log_every=5";
}

/// Pretrains the dense base on python-docs only.
void pretrain_base(const testutil::TempDir& dir) {
  auto r = run_command(testutil::cli() + " train --config " + testutil::source_dir() + "/configs/lm/tiny.yaml --name base" +
                       common(dir) +
                       " --set lm.moe_every=0 --set lm.context=48 --set model.d_model=32 --set lm.heads=2 --set lm.d_ff=64"
                       " --set train.batch_size=8 --set train.warmup_steps=5 --set lm.eval_tokens=2048"
                       " --set train.steps=60 --set train.eval_every=60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

std::string finetune_cmd(const testutil::TempDir& dir, const std::string& name, const std::string& adapter,
                         const std::string& extra = "") {
  return testutil::cli() + " train --config " + testutil::source_dir() + "/configs/finetune/tiny.yaml --name " + name +
         common(dir) + " --set finetune.base=" + dir.file("runs/base") + " --set finetune.adapter=" + adapter +
         " --set finetune.domains=python-docs,kernel-docs --set finetune.rank=4 --set finetune.experts=3" +
         " --set lm.context=48 --set finetune.mc_items=12 --set finetune.mc_context=24 --set finetune.mc_continuation=8" +
         " --set lm.eval_tokens=1536 --set train.batch_size=8 --set train.warmup_steps=5 --set train.steps=40 --set train.lr=0.01"
         " --set train.eval_every=20 " + extra;
}

TEST(Finetune, AdaptersLearnTheNewDomainAndLeaveTheBaseUntouched) {
  testutil::TempDir dir;
  make_domains(dir);
  pretrain_base(dir);
  const std::string base_ckpt = dir.file("runs/base/checkpoints/step_00000060/model.safetensors");
  const std::string base_bytes = read_file(base_ckpt);
  for (const char* adapter : {"lora", "dynmole"}) {
    const std::string name = std::string("ft-") + adapter;
    auto r = run_command(finetune_cmd(dir, name, adapter));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("base model  val loss"), std::string::npos) << r.output;
    const auto s = nlohmann::json::parse(read_file(dir.file("runs/" + name + "/summary.json")));
    // the unseen domain improves (a little: the base is barely trained and frozen, 40 steps)
    const double before = s["base_domains"]["kernel-docs"]["val_perplexity"].get<double>();
    const double after = s["domains"]["kernel-docs"]["val_perplexity"].get<double>();
    EXPECT_LT(after, 0.98 * before) << adapter << ": kernel-docs " << before << " -> " << after;
    EXPECT_LT(s["val_perplexity"].get<double>(), s["base_val_perplexity"].get<double>()) << adapter;
    EXPECT_EQ(s["domains"]["python-docs"]["mc_items"].get<int>(), 12);
    EXPECT_GE(testutil::expect_common_row_fields(dir.file("runs/" + name), "tokens"), 1) << adapter;
    if (std::string(adapter) == "dynmole") {
      const double all = s["all_experts_fraction"].get<double>();
      EXPECT_GE(all, 0.0);
      EXPECT_LE(all, 1.0);
      ASSERT_EQ(s["routing"]["layers"].size(), 8u);  // fc1, fc2 of 4 blocks
      const auto& shares = s["routing"]["layers"][0]["shares"]["kernel-docs"];
      double sum = 0;
      for (const auto& x : shares) sum += x.get<double>();
      EXPECT_NEAR(sum, 1.0, 1e-9);
    } else {
      EXPECT_FALSE(s.contains("routing"));
    }
    // every base tensor of the run's last checkpoint is bitwise the base's; the rest are adapters
    const auto b = io::load_safetensors(base_ckpt);
    const auto f = io::load_safetensors(dir.file("runs/" + name + "/checkpoints/step_00000040/model.safetensors"));
    int adapter_tensors = 0;
    for (const auto& [key, t] : f.tensors) {
      auto it = b.tensors.find(key);
      if (it == b.tensors.end()) {
        EXPECT_NE(key.find(".adapter."), std::string::npos) << key;
        ++adapter_tensors;
        continue;
      }
      EXPECT_TRUE(torch::equal(t, it->second)) << adapter << ": base tensor " << key << " changed";
    }
    EXPECT_EQ(adapter_tensors, std::string(adapter) == "lora" ? 16 : 24);
    EXPECT_EQ(b.tensors.size() + adapter_tensors, f.tensors.size());
    // the adapters reload onto the base and reproduce the run's multiple-choice accuracy
    r = run_command(testutil::cli() + " mc --threads 1 --model " + dir.file("runs/" + name) + " --tasks " +
                    dir.file("runs/" + name + "/mc.jsonl"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    char expect[64];
    std::snprintf(expect, sizeof expect, "accuracy %.4f, length-normalised accuracy %.4f on 24 items",
                  s["mc_accuracy"].get<double>(), s["mc_accuracy_norm"].get<double>());
    EXPECT_NE(r.output.find(expect), std::string::npos) << expect << "\n" << r.output;
  }
  EXPECT_EQ(read_file(base_ckpt), base_bytes) << "the base checkpoint file was rewritten";

  // data parallel on 2 processes (each 4 of every 8 windows; LoRA dropout drawn for the whole
  // batch; DynMoLE's loss from the whole batch's means) ends where one process ends
  {
    auto dp = run_command(testutil::launched(2, finetune_cmd(dir, "ft-dp", "dynmole")));
    ASSERT_EQ(dp.exit_code, 0) << dp.output;
    std::string worst;
    const double d = testutil::max_relative_difference(io::load_safetensors(dir.file("runs/ft-dynmole/adapter.safetensors")),
                                                       io::load_safetensors(dir.file("runs/ft-dp/adapter.safetensors")), &worst);
    std::cout << "[ finetune ] dynmole on 2 processes: largest relative adapter difference " << d << " (" << worst << ")\n";
    EXPECT_LT(d, 1e-5) << worst;
  }

  // interrupted after its step-20 checkpoint and resumed: the same adapters as straight through
  auto r = run_command(finetune_cmd(dir, "half", "dynmole", "--set train.keep_checkpoints=2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove_all(dir.file("runs/half/checkpoints/step_00000040"));
  fs::remove(dir.file("runs/half/summary.json"));
  fs::remove(dir.file("runs/half/adapter.safetensors"));
  r = run_command(testutil::cli() + " train --plain --resume " + dir.file("runs/half"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("from step 20"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(dir.file("runs/half/adapter.safetensors")), read_file(dir.file("runs/ft-dynmole/adapter.safetensors")));

  // errors: one line, non-zero exit, no run folder
  r = run_command(finetune_cmd(dir, "bad1", "dynmole", "--set finetune.base=" + dir.file("runs/nothing")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nothing"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("runs/bad1")));
  r = run_command(finetune_cmd(dir, "bad2", "dynmole", "--set finetune.domains=python-docs,wikipedia"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("'wikipedia' is not a text corpus"), std::string::npos) << r.output;
  r = run_command(finetune_cmd(dir, "bad3", "dynmole", "--set finetune.domains=python-docs,jargon"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("dynamoe data fetch jargon"), std::string::npos) << r.output;
  r = run_command(finetune_cmd(dir, "bad4", "dynmole", "--set finetune.targets=ffn"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("'ffn' matches no projection"), std::string::npos) << r.output;
  r = run_command(finetune_cmd(dir, "bad5", "dynmole", "--set lm.context=64"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("context of 48"), std::string::npos) << r.output;
  for (const char* n : {"bad1", "bad2", "bad3", "bad4", "bad5"}) EXPECT_FALSE(fs::exists(dir.file(std::string("runs/") + n))) << n;
}

TEST(Finetune, ContinuationTaskItemsAreRealContinuationsWithDistinctDistractors) {
  testutil::TempDir dir;
  make_domains(dir);
  const auto corpus = data::open_token_corpus(dir.file("data/kernel-docs/byte"));
  auto tok = text::make_tokenizer("byte", "");
  const auto items = eval::continuation_task(corpus.val, *tok, {20, 4, 24, 8, 99, "kernel"});
  ASSERT_EQ(items.size(), 20u);
  std::string val;
  for (int64_t i = 0; i < corpus.val.size(); ++i) val.push_back(static_cast<char>(corpus.val.data()[i]));
  std::set<int64_t> labels;
  for (const auto& it : items) {
    ASSERT_EQ(it.choices.size(), 4u);
    EXPECT_EQ(it.context.size(), 24u);
    EXPECT_EQ(it.domain, "kernel");
    labels.insert(it.label);
    // the labelled choice really follows the context in the split
    EXPECT_NE(val.find(it.context + it.choices[static_cast<size_t>(it.label)]), std::string::npos);
    std::set<std::string> distinct(it.choices.begin(), it.choices.end());
    EXPECT_EQ(distinct.size(), 4u);
    for (const auto& c : it.choices) EXPECT_EQ(c.size(), 8u);
  }
  EXPECT_GE(labels.size(), 3u) << "the real continuation is placed at random";
  // a pure function of its inputs
  const auto again = eval::continuation_task(corpus.val, *tok, {20, 4, 24, 8, 99, "kernel"});
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(again[i].choices, items[i].choices);
  testutil::expect_error([&] { eval::continuation_task(corpus.val, *tok, {100000, 4, 24, 8, 1, ""}); },
                         {"too few for 100000 items"});
  EXPECT_TRUE(eval::valid_utf8("plain \xC3\xA9t\xC3\xA9"));
  EXPECT_FALSE(eval::valid_utf8("cut \xC3"));
  EXPECT_FALSE(eval::valid_utf8("\xED\xA0\x80"));  // a surrogate
}

}  // namespace
}  // namespace dynamoe
