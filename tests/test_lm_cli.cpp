// The language model end to end on the command line: a small synthetic python-docs corpus ->
// dynamoe train (perplexity next to the bigram baseline, exact resumption) -> dynamoe eval ->
// dynamoe generate (cache == no cache), and the clear errors for a corrupt token file, a
// prompt longer than the context and an unknown corpus.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>
#include <string>

#include "dynamoe/data/corpus.h"
#include "dynamoe/util/atomic_file.h"
#include "test_util.h"

namespace dynamoe {
namespace {
namespace fs = std::filesystem;
using testutil::run_command;

// A fake unpacked python3.11-doc with 60 documents of patterned English-like text.
std::string make_corpus(const testutil::TempDir& dir) {
  const std::string root = dir.file("pkg");
  const std::vector<std::string> subj = {"the parser", "a module", "this function", "the loop", "an object"};
  const std::vector<std::string> verb = {"returns", "reads", "writes", "calls", "keeps"};
  const std::vector<std::string> obj = {"a list of names.", "the file.", "every value.", "its own state.", "a string."};
  std::mt19937 rng(5);
  for (int d = 0; d < 60; ++d) {
    std::string text = "Title " + std::to_string(d) + "\n=========\n\n";
    for (int s = 0; s < 40; ++s)
      text += subj[rng() % 5] + " " + verb[rng() % 5] + " " + obj[rng() % 5] + (s % 6 == 5 ? "\n\n" : " ");
    const fs::path p = fs::path(root) / "usr/share/doc/python3.11/html/_sources/library" / ("m" + std::to_string(d) + ".rst.txt");
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  data::FetchOptions o;
  o.data_dir = dir.file("data");
  data::convert_corpus_package("python-docs", root, "test", "byte", o);
  return o.data_dir;
}

std::string train_cmd(const testutil::TempDir& dir, const std::string& name, const std::string& extra = "") {
  return testutil::cli() + " train --config " + testutil::source_dir() + "/configs/lm/tiny.yaml --plain --name " + name +
         " --set data.dir=" + dir.file("data") + " --set train.runs_dir=" + dir.file("runs") +
         " --set lm.context=32 --set model.d_model=32 --set lm.heads=2 --set lm.d_ff=64 --set moe.experts.hidden=32"
         " --set train.batch_size=8 --set train.warmup_steps=5 --set train.log_every=5 --set train.threads=1"
         " --set lm.eval_tokens=2048 " + extra;
}

TEST(LMCli, TrainEvalGenerateAndResume) {
  testutil::TempDir dir;
  make_corpus(dir);
  // 40 steps straight through
  auto r = run_command(train_cmd(dir, "full", "--set train.steps=40 --set train.eval_every=20"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("val perplexity"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vs bigram"), std::string::npos) << r.output;
  const auto full = nlohmann::json::parse(read_file(dir.file("runs/full/summary.json")));
  EXPECT_GT(full["bigram_val_perplexity"].get<double>(), 1.0);
  EXPECT_LT(full["val_perplexity"].get<double>(), 257.0);
  EXPECT_EQ(full["moe"].size(), 2u);
  EXPECT_GE(testutil::expect_common_row_fields(dir.file("runs/full"), "tokens"), 1);
  // the same run killed after its step-20 checkpoint and resumed ends with the same weights
  r = run_command(train_cmd(dir, "half", "--set train.steps=40 --set train.eval_every=20"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove_all(dir.file("runs/half/checkpoints/step_00000040"));
  fs::remove(dir.file("runs/half/summary.json"));
  r = run_command(testutil::cli() + " train --plain --resume " + dir.file("runs/half"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("from step 20"), std::string::npos) << r.output;
  const auto half = nlohmann::json::parse(read_file(dir.file("runs/half/summary.json")));
  EXPECT_EQ(half["val_loss"].get<double>(), full["val_loss"].get<double>());
  EXPECT_EQ(read_file(dir.file("runs/half/checkpoints/step_00000040/model.safetensors")),
            read_file(dir.file("runs/full/checkpoints/step_00000040/model.safetensors")));

  // data parallel on 2 processes (each 4 of every 8 windows) ends where one process ends, also
  // with dropout (its mask drawn for the whole batch)
  r = run_command(testutil::launched(2, train_cmd(dir, "dp", "--set train.steps=40 --set train.eval_every=20")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string worst;
  double d = testutil::max_relative_difference(testutil::final_weights(dir.file("runs/full")),
                                               testutil::final_weights(dir.file("runs/dp")), &worst);
  std::cout << "[ lm ] 2 processes: largest relative weight difference " << d << " (" << worst << ")\n";
  EXPECT_LT(d, 1e-5) << worst;
  const auto dp = nlohmann::json::parse(read_file(dir.file("runs/dp/summary.json")));
  EXPECT_NEAR(dp["val_loss"].get<double>(), full["val_loss"].get<double>(), 1e-5);
  const std::string dropout = "--set train.steps=20 --set train.eval_every=20 --set model.dropout=0.2";
  ASSERT_EQ(run_command(train_cmd(dir, "drop1", dropout)).exit_code, 0);
  r = run_command(testutil::launched(2, train_cmd(dir, "drop2", dropout)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  d = testutil::max_relative_difference(testutil::final_weights(dir.file("runs/drop1")),
                                        testutil::final_weights(dir.file("runs/drop2")), &worst);
  std::cout << "[ lm ] 2 processes, dropout 0.2: largest relative weight difference " << d << " (" << worst << ")\n";
  EXPECT_LT(d, 1e-5) << worst;

  // eval reprints the same perplexity, and --per-example writes one row per scored token
  r = run_command(testutil::cli() + " eval --checkpoint " + dir.file("runs/full") + " --per-example " +
                  dir.file("per_token.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("val perplexity"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bigram baseline"), std::string::npos) << r.output;
  {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.output, m, std::regex("loss ([0-9.]+) nats/token.* on ([0-9]+) tokens"))) << r.output;
    std::istringstream csv(read_file(dir.file("per_token.csv")));
    std::string line;
    std::getline(csv, line);
    EXPECT_EQ(line.rfind("item,loss,active_mean,active_0", 0), 0u) << line;
    int64_t rows = 0;
    double loss = 0;
    for (; std::getline(csv, line); ++rows) loss += std::stod(line.substr(line.find(',') + 1));
    EXPECT_EQ(rows, std::stoll(m[2]));
    EXPECT_NEAR(loss / rows, std::stod(m[1]), 1e-3);
    EXPECT_NE(r.output.find("active experts vs token loss, Spearman rho"), std::string::npos) << r.output;
  }

  // generation: greedy with and without the KV cache print the same text, beyond the context
  const std::string gen = testutil::cli() + " generate --checkpoint " + dir.file("runs/full") +
                          " --prompt 'the parser ' --temperature 0 --max-tokens 60 --no-stop";
  // stdout only: the tokens/s line on stderr differs between the two
  auto a = run_command("{ " + gen + " 2>/dev/null; }"), b = run_command("{ " + gen + " --no-cache 2>/dev/null; }");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_GE(a.output.size(), std::string("the parser ").size() + 60);
  auto c = run_command(gen);
  EXPECT_NE(c.output.find("tokens/s (KV cache"), std::string::npos) << c.output;
  // with stdout and stderr in one pipe, the stats line starts a line of its own
  const size_t stats = c.output.find(" prompt + ");
  ASSERT_NE(stats, std::string::npos) << c.output;
  const size_t line_start = c.output.rfind('\n', stats);
  ASSERT_NE(line_start, std::string::npos) << c.output;
  const std::string count = c.output.substr(line_start + 1, stats - line_start - 1);
  EXPECT_TRUE(!count.empty() && count.find_first_not_of("0123456789") == std::string::npos)
      << "the stats line is glued to the text: " << c.output;
  // sampling is reproducible from the seed
  const std::string sample = testutil::cli() + " generate --checkpoint " + dir.file("runs/full") +
                             " --prompt 'a module' --temperature 0.9 --top-k 20 --top-p 0.9 --seed 3 --max-tokens 30";
  EXPECT_EQ(run_command("{ " + sample + " 2>/dev/null; }").output, run_command("{ " + sample + " --no-cache 2>/dev/null; }").output);

  // a prompt longer than the context (32 bytes)
  r = run_command(testutil::cli() + " generate --checkpoint " + dir.file("runs/full") + " --prompt '" +
                  std::string(40, 'a') + "'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("prompt is 40 tokens, longer than the model's context of 32"), std::string::npos) << r.output;
  // bad sampling options are usage errors
  r = run_command(testutil::cli() + " generate --checkpoint " + dir.file("runs/full") + " --prompt x --top-p 1.5");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--top-p"), std::string::npos) << r.output;
}

TEST(LMCli, CorruptOrMissingCorpusIsAClearError) {
  testutil::TempDir dir;
  const std::string data_dir = make_corpus(dir);
  // truncate val.bin by one token: train refuses before creating the run folder
  const std::string val = data_dir + "/python-docs/byte/val.bin";
  fs::resize_file(val, fs::file_size(val) - 2);
  auto r = run_command(train_cmd(dir, "bad", "--set train.steps=2"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("val.bin"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("runs/bad")));
  // an out-of-range id (same size, checksum fixed up by hand would be needed: the checksum catches it first)
  // the gpt2 split of the corpus has not been fetched
  r = run_command(train_cmd(dir, "none", "--set train.steps=2 --set data.tokenizer=gpt2"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("dynamoe data fetch python-docs --tokenizer gpt2"), std::string::npos) << r.output;
  // an image model on a text corpus is a config error
  r = run_command(train_cmd(dir, "mixed", "--set model.kind=mlp"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model.kind = 'mlp' does not fit data.dataset = 'python-docs'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace dynamoe
