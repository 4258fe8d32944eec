// CIFAR-10 binary reader on generated batch files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dynamoe/data/cifar.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using ScratchDir = dynamoe::testutil::TempDir;

using dynamoe::testutil::expect_error;

// Pixel k of global image g: a pattern that differs per image, channel and position.
uint8_t pixel(int g, int k) { return static_cast<uint8_t>((g * 131 + k * 7 + k / 1024) % 256); }

// A batch file of records for global images first .. first + labels.size() - 1.
std::string batch_bytes(int first, const std::vector<uint8_t>& labels) {
  std::string s;
  for (size_t r = 0; r < labels.size(); ++r) {
    s.push_back(static_cast<char>(labels[r]));
    for (int k = 0; k < 3072; ++k) s.push_back(static_cast<char>(pixel(first + static_cast<int>(r), k)));
  }
  return s;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

TEST(DataCifar, ReadsTwoBatchesExactly) {
  ScratchDir dir;
  const std::string b1 = dir.file("data_batch_1.bin"), b2 = dir.file("data_batch_2.bin");
  write_bytes(b1, batch_bytes(0, {3, 0, 9}));
  write_bytes(b2, batch_bytes(3, {5, 1}));
  const dynamoe::data::ImageSet s = dynamoe::data::read_cifar10({b1, b2});
  EXPECT_EQ(s.n, 5);
  EXPECT_EQ(s.channels, 3);
  EXPECT_EQ(s.height, 32);
  EXPECT_EQ(s.width, 32);
  EXPECT_EQ(s.labels, (std::vector<uint8_t>{3, 0, 9, 5, 1}));
  ASSERT_EQ(s.pixels.size(), 5u * 3072u);
  for (int g = 0; g < 5; ++g)
    for (int k = 0; k < 3072; ++k)
      ASSERT_EQ(s.pixels[static_cast<size_t>(g * 3072 + k)], pixel(g, k)) << "image " << g << " byte " << k;
  // Channel-major: green of pixel (row 2, col 5) of image 4 is byte 1024 + 2*32 + 5.
  EXPECT_EQ(s.pixels[4 * 3072 + 1024 + 2 * 32 + 5], pixel(4, 1024 + 69));
}

TEST(DataCifar, TruncatedRecordThrows) {
  ScratchDir dir;
  const std::string path = dir.file("data_batch_1.bin");
  write_bytes(path, batch_bytes(0, {1, 2}) + std::string(100, '\x01'));
  expect_error([&] { dynamoe::data::read_cifar10({path}); },
               {path, "not a multiple of 3073", "record 2", "byte offset 6146"});
}

TEST(DataCifar, LabelTenThrows) {
  ScratchDir dir;
  const std::string good = dir.file("data_batch_1.bin"), bad = dir.file("data_batch_2.bin");
  write_bytes(good, batch_bytes(0, {9}));
  write_bytes(bad, batch_bytes(1, {4, 10, 2}));
  expect_error([&] { dynamoe::data::read_cifar10({good, bad}); },
               {bad, "record 1", "byte offset 3073", "label 10", "0..9"});
}

TEST(DataCifar, EmptyInputsThrow) {
  ScratchDir dir;
  expect_error([&] { dynamoe::data::read_cifar10({}); }, {"no CIFAR-10 batch files"});
  const std::string empty = dir.file("empty.bin");
  write_bytes(empty, "");
  expect_error([&] { dynamoe::data::read_cifar10({empty}); }, {empty, "empty"});
  const std::string absent = dir.file("absent.bin");
  expect_error([&] { dynamoe::data::read_cifar10({absent}); }, {absent});
}

}  // namespace
