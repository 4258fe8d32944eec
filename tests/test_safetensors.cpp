// safetensors: round trips of every dtype, strict parsing, and an independent reader in Python.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sys/resource.h>

#include "dynamoe/io/safetensors.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/json_text.h"
#include "test_util.h"

using namespace dynamoe;

namespace {

io::NamedTensors sample_tensors() {
  torch::manual_seed(3);
  return {{"layers.0.weight", torch::randn({4, 3})},
          {"layers.0.bias", torch::randn({4}, torch::kDouble)},
          {"steps", torch::arange(5, torch::kLong) * static_cast<int64_t>(1000000007)},
          {"mask", torch::tensor({1, 0, 1}, torch::kBool)},
          {"bytes", torch::tensor({0, 7, 255}, torch::kByte)},
          {"half", torch::randn({2, 2}).to(torch::kBFloat16)},
          {"scalar", torch::tensor(2.5f)},
          {"empty", torch::zeros({0, 3})}};
}

std::string error_of(const std::string& bytes) {
  try {
    io::parse_safetensors(bytes, "f.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  auto ts = sample_tensors();
  io::SafetensorsFile f = io::parse_safetensors(io::safetensors_bytes(ts, {{"k", "v"}}), "mem");
  ASSERT_EQ(f.tensors.size(), ts.size());
  EXPECT_EQ(f.metadata.at("k"), "v");
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto& [name, t] = ts[i];
    EXPECT_EQ(f.names[i], name);
    const at::Tensor& g = f.at(name);
    EXPECT_EQ(g.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(g.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(g, t)) << name;
  }
}

TEST(Safetensors, HeaderIsAlignedAndLittleEndian) {
  std::string b = io::safetensors_bytes({{"x", torch::tensor({1.0f})}});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(b[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(b.size(), 8 + n + 4);
  EXPECT_EQ(b.substr(8, 1), "{");
}

TEST(Safetensors, RejectsTruncatedAndMalformed) {
  std::string good = io::safetensors_bytes(sample_tensors());
  EXPECT_NE(error_of(good.substr(0, 5)).find("truncated"), std::string::npos);
  EXPECT_NE(error_of(good.substr(0, good.size() - 1)).find("f.safetensors"), std::string::npos);
  EXPECT_NE(error_of(good + "xx").find("data bytes"), std::string::npos);
  std::string bad_len = good;
  bad_len[3] = 1;  // header length (16 MB) far beyond the file
  EXPECT_NE(error_of(bad_len).find("exceeds the file size"), std::string::npos);
  std::string bad_json = good;
  bad_json[8] = '[';
  EXPECT_NE(error_of(bad_json).find("f.safetensors"), std::string::npos);
  EXPECT_THROW(io::load_safetensors("/nonexistent/x.safetensors"), Error);
}

TEST(Safetensors, AtTellsMissingName) {
  io::SafetensorsFile f = io::parse_safetensors(io::safetensors_bytes({{"a", torch::ones({1})}}), "m.st");
  try {
    f.at("b");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor named 'b'"), std::string::npos);
  }
}

// An independent reader (Debian's python3-torch and a few lines of Python) sees the same
// tensors: every element is compared exactly against a hex-float dump written here.
TEST(Safetensors, PythonTorchReadsTheSameTensors) {
  testutil::TempDir tmp;
  auto ts = sample_tensors();
  io::save_safetensors(tmp / "t.safetensors", ts);
  std::ofstream dump(tmp / "expected.txt");
  for (const auto& [name, t] : ts) {
    at::Tensor d = t.to(torch::kDouble).contiguous().flatten();
    dump << name << " " << c10::toString(t.scalar_type()) << " " << t.dim();
    for (int64_t s : t.sizes()) dump << " " << s;
    for (int64_t i = 0; i < d.numel(); ++i) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), " %a", d.data_ptr<double>()[i]);
      dump << buf;
    }
    dump << "\n";
  }
  dump.close();
  auto r = testutil::run_command("/usr/bin/python3 " + testutil::source_dir() + "/tests/python/read_safetensors.py " +
                                (tmp / "t.safetensors") + " " + (tmp / "expected.txt"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("8 tensors equal"), std::string::npos) << r.output;
}

namespace {

/// A safetensors file whose one tensor has a `shape` nested `depth` arrays deep around a 0.
std::string deeply_nested_shape(int depth) {
  const std::string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[" + std::string(depth, '[') + "0" +
                             std::string(depth, ']') + "],\"data_offsets\":[0,0]}}";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes + header;
}

}  // namespace

// A hostile header nested 100,000 levels deep (200 KB) crashed every reader with a stack overflow
// while it built its error message; it is now a one-line error, from the library and the CLI.
TEST(Safetensors, DeeplyNestedHeaderIsAnErrorNotACrash) {
  const std::string bytes = deeply_nested_shape(100000);
  testutil::expect_error([&] { io::parse_safetensors(bytes, "deep.safetensors"); },
                         {"deep.safetensors", "nested deeper than 64 levels"});
  // Nesting within the limit reaches the shape check, whose message shows a short excerpt.
  testutil::expect_error([&] { io::parse_safetensors(deeply_nested_shape(40), "d40.safetensors"); },
                         {"d40.safetensors", "bad shape entry [[[[[...]]]]]"});

  testutil::TempDir dir;
  const std::string path = dir.file("deep.safetensors");
  write_file_atomic(path, bytes);
  const auto r = testutil::run_command(testutil::cli() + " moe-apply --config " + testutil::source_dir() +
                                       "/configs/demo.yaml --input " + path + " --out " + dir.file("out.safetensors"));
  EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << r.exit_code << " " << r.output;  // not 139 (SIGSEGV)
  EXPECT_NE(r.output.find("nested deeper than 64 levels"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("out.safetensors")));
}

TEST(JsonText, ExcerptsAreShortAndNeverDeep) {
  nlohmann::json deep = 1;
  for (int i = 0; i < 100000; ++i) deep = nlohmann::json::array({std::move(deep)});
  EXPECT_EQ(json_excerpt(deep), "[[[[[...]]]]]");
  EXPECT_EQ(json_excerpt(nlohmann::json{{"a", 1}, {"b", "x"}}), "{\"a\":1,\"b\":\"x\"}");
  const std::string long_one = json_excerpt(nlohmann::json(std::vector<int>(1000, 7)), 20);
  EXPECT_EQ(long_one.size(), 23u);
  EXPECT_EQ(long_one.substr(20), "...");
  EXPECT_THROW(parse_json("[[1]]", "x", 1), Error);
  EXPECT_EQ(parse_json("[[1]]", "x", 2), nlohmann::json::parse("[[1]]"));
  testutil::expect_error([] { parse_json("{\"a\":", "m.json"); }, {"m.json", "invalid JSON"});
}

// A symlink to a device (or the device itself) used to be read until memory ran out.
TEST(Safetensors, OnlyRegularFilesAreRead) {
  testutil::TempDir dir;
  std::filesystem::create_symlink("/dev/zero", dir.file("zero.safetensors"));
  testutil::expect_error([&] { io::load_safetensors(dir.file("zero.safetensors")); },
                         {"zero.safetensors", "not a regular file"});
  testutil::expect_error([&] { io::load_safetensors(dir.str()); }, {dir.str(), "it is a directory"});
}

// Hostile sizes are refused from the header, before the data is read: a header over the
// reference library's 100,000,000-byte limit, and 1 GiB of trailing data (a sparse file: the
// peak memory of the process must not grow by anything like it).
TEST(Safetensors, SizesAreCheckedBeforeTheDataIsRead) {
  testutil::TempDir tmp;
  {
    std::string bytes(8 + 16, ' ');
    const uint64_t hlen = 200000000;
    std::memcpy(bytes.data(), &hlen, 8);
    write_file_atomic(tmp / "big-header.safetensors", bytes);
    testutil::expect_error([&] { io::load_safetensors(tmp / "big-header.safetensors"); },
                           {"big-header.safetensors", "header length 200000000", "100000000-byte limit"});
  }
  const std::string path = tmp / "trailing.safetensors";
  io::save_safetensors(path, {{"w", torch::ones({4, 4})}});
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size + (1ull << 30));
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  testutil::expect_error([&] { io::load_safetensors(path); }, {"trailing.safetensors", "1073741824 bytes of trailing data"});
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 200 * 1024) << "kB of peak memory added by reading the header";
}
