// IDX reader/writer: round trips (plain and gzip, several element types), exact-size
// validation and the pairing of image and label files.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dynamoe/config/config.h"
#include "dynamoe/data/dataset.h"
#include "dynamoe/data/idx.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/gzip.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using dynamoe::data::IdxArray;

using ScratchDir = dynamoe::testutil::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

using dynamoe::testutil::expect_error;

// Big-endian IDX file bytes built by hand (independent of write_idx).
std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::string& payload) {
  std::string s = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((d >> shift) & 0xff));
  return s + payload;
}

IdxArray uint8_array() {
  IdxArray a;
  a.type_code = dynamoe::data::kIdxUint8;
  a.dims = {3, 4, 5};
  for (int i = 0; i < 60; ++i) a.data.push_back(static_cast<uint8_t>((i * 37 + 11) % 256));
  return a;
}

template <typename T>
IdxArray typed_array(uint8_t code, const std::vector<int64_t>& dims, const std::vector<T>& values) {
  IdxArray a;
  a.type_code = code;
  a.dims = dims;
  a.data.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(a.data.data(), values.data(), a.data.size());
  return a;
}

TEST(DataIdx, RoundTripUint8PlainAndExactBytes) {
  ScratchDir dir;
  const std::string path = dir.file("a-idx3-ubyte");
  const IdxArray a = uint8_array();
  dynamoe::data::write_idx(path, a);
  std::string payload(a.data.begin(), a.data.end());
  EXPECT_EQ(dynamoe::read_file(path), idx_bytes(0x08, {3, 4, 5}, payload));
  const IdxArray b = dynamoe::data::read_idx(path);
  EXPECT_EQ(b.type_code, 0x08);
  EXPECT_EQ(b.dims, a.dims);
  EXPECT_EQ(b.data, a.data);
  EXPECT_EQ(b.numel(), 60);
}

TEST(DataIdx, RoundTripFloat32IsBigEndianOnDisk) {
  ScratchDir dir;
  const std::string path = dir.file("f32");
  const std::vector<float> v = {1.0f, -2.5f, 0.0f, 3.25e-3f, 65504.0f, -0.0f};
  const IdxArray a = typed_array<float>(dynamoe::data::kIdxFloat32, {2, 3}, v);
  dynamoe::data::write_idx(path, a);
  const std::string raw = dynamoe::read_file(path);
  ASSERT_EQ(raw.size(), 4u + 8u + 24u);
  // 1.0f = 0x3f800000 big-endian, -2.5f = 0xc0200000.
  EXPECT_EQ(raw.substr(12, 8), std::string("\x3f\x80\x00\x00\xc0\x20\x00\x00", 8));
  const IdxArray b = dynamoe::data::read_idx(path);
  EXPECT_EQ(b.type_code, dynamoe::data::kIdxFloat32);
  EXPECT_EQ(b.dims, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(b.data.size(), v.size() * 4);
  const auto* f = reinterpret_cast<const float*>(b.data.data());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(std::memcmp(&f[i], &v[i], 4), 0) << i;
}

TEST(DataIdx, RoundTripEveryTypePlainAndGzip) {
  ScratchDir dir;
  const std::vector<IdxArray> arrays = {
      uint8_array(),
      typed_array<int8_t>(dynamoe::data::kIdxInt8, {4}, {-128, -1, 0, 127}),
      typed_array<int16_t>(dynamoe::data::kIdxInt16, {2, 2}, {-32768, -2, 258, 32767}),
      typed_array<int32_t>(dynamoe::data::kIdxInt32, {3}, {-2147483647 - 1, 16909060, 7}),
      typed_array<double>(dynamoe::data::kIdxFloat64, {1, 2, 1, 2}, {3.141592653589793, -1e300, 0.5, 2}),
      typed_array<uint8_t>(dynamoe::data::kIdxUint8, {0, 28}, {}),
  };
  for (size_t i = 0; i < arrays.size(); ++i) {
    const IdxArray& a = arrays[i];
    const std::string plain = dir.file("plain" + std::to_string(i));
    dynamoe::data::write_idx(plain, a);
    // The same bytes gzip-compressed, in a file whose name does not end in .gz: the reader
    // must detect compression by the magic bytes.
    const std::string gz = dir.file("compressed" + std::to_string(i) + ".idx");
    write_gzip(gz, dynamoe::read_file(plain));
    ASSERT_EQ(static_cast<uint8_t>(dynamoe::read_file(gz)[0]), 0x1f);
    for (const std::string& path : {plain, gz}) {
      const IdxArray b = dynamoe::data::read_idx(path);
      EXPECT_EQ(b.type_code, a.type_code) << path;
      EXPECT_EQ(b.dims, a.dims) << path;
      EXPECT_EQ(b.data, a.data) << path;
    }
  }
}

TEST(DataIdx, ConcatenatedGzipMembersAreOneStream) {
  ScratchDir dir;
  const std::string whole = idx_bytes(0x08, {6}, "abcdef");
  const std::string a = dir.file("a.gz"), b = dir.file("b.gz"), ab = dir.file("ab.gz");
  write_gzip(a, whole.substr(0, 7));
  write_gzip(b, whole.substr(7));
  write_bytes(ab, dynamoe::read_file(a) + dynamoe::read_file(b));
  EXPECT_EQ(dynamoe::data::read_idx(ab).data, (std::vector<uint8_t>{'a', 'b', 'c', 'd', 'e', 'f'}));
}

TEST(DataIdx, TruncatedDataThrowsWithPath) {
  ScratchDir dir;
  const std::string path = dir.file("truncated-idx3-ubyte");
  write_bytes(path, idx_bytes(0x08, {2, 3, 3}, std::string(17, 'x')));  // 18 needed
  expect_error([&] { dynamoe::data::read_idx(path); },
               {path, "truncated", "18", "17", "byte offset 16"});
}

TEST(DataIdx, TruncatedHeaderThrows) {
  ScratchDir dir;
  const std::string path = dir.file("short-header");
  write_bytes(path, idx_bytes(0x08, {2, 3, 3}, "").substr(0, 10));
  expect_error([&] { dynamoe::data::read_idx(path); }, {path, "truncated header"});
  write_bytes(path, std::string("\0\0", 2));
  expect_error([&] { dynamoe::data::read_idx(path); }, {path, "truncated header"});
}

TEST(DataIdx, TruncatedGzipThrows) {
  ScratchDir dir;
  const std::string gz = dir.file("t.gz");
  std::string payload;
  for (int i = 0; i < 5000; ++i) payload.push_back(static_cast<char>((i * 7919) % 251));
  write_gzip(gz, idx_bytes(0x08, {5000}, payload));
  const std::string bytes = dynamoe::read_file(gz);
  write_bytes(gz, bytes.substr(0, bytes.size() / 2));
  expect_error([&] { dynamoe::data::read_idx(gz); }, {gz, "gzip"});
}

TEST(DataIdx, BadMagicThrows) {
  ScratchDir dir;
  const std::string path = dir.file("bad-magic");
  std::string bytes = idx_bytes(0x08, {2}, "ab");
  bytes[1] = 0x01;
  write_bytes(path, bytes);
  expect_error([&] { dynamoe::data::read_idx(path); }, {path, "bad magic"});
  const std::string text = dir.file("text.json");
  write_bytes(text, "{\"data\": [1, 2, 3]}");
  expect_error([&] { dynamoe::data::read_idx(text); }, {text, "bad magic"});
}

TEST(DataIdx, UnknownTypeCodeThrows) {
  ScratchDir dir;
  const std::string path = dir.file("bad-type");
  write_bytes(path, idx_bytes(0x0A, {2}, "ab"));
  expect_error([&] { dynamoe::data::read_idx(path); }, {path, "type code 0x0a", "byte offset 2"});
}

TEST(DataIdx, TrailingBytesThrow) {
  ScratchDir dir;
  const std::string path = dir.file("trailing");
  write_bytes(path, idx_bytes(0x08, {2, 2}, "abcdX"));
  expect_error([&] { dynamoe::data::read_idx(path); }, {path, "1 trailing bytes", "byte offset 16"});
  // The same inside gzip: offsets refer to the decompressed stream.
  const std::string gz = dir.file("trailing.gz");
  write_gzip(gz, idx_bytes(0x08, {2, 2}, "abcdXY"));
  expect_error([&] { dynamoe::data::read_idx(gz); }, {gz, "2 trailing bytes", "decompressed"});
}

TEST(DataIdx, MissingFileThrowsWithPath) {
  ScratchDir dir;
  const std::string path = dir.file("absent-idx1-ubyte");
  expect_error([&] { dynamoe::data::read_idx(path); }, {path});
}

TEST(DataIdx, WriteRejectsInconsistentArrayAndWritesNothing) {
  ScratchDir dir;
  const std::string path = dir.file("never");
  IdxArray a = uint8_array();
  a.data.pop_back();
  expect_error([&] { dynamoe::data::write_idx(path, a); }, {path, "60", "59"});
  a = uint8_array();
  a.type_code = 0x07;
  expect_error([&] { dynamoe::data::write_idx(path, a); }, {path, "type code"});
  EXPECT_FALSE(fs::exists(path));
}

TEST(DataIdx, ReadImagesPairsImagesAndLabels) {
  ScratchDir dir;
  IdxArray images;
  images.dims = {3, 2, 4};
  for (int i = 0; i < 24; ++i) images.data.push_back(static_cast<uint8_t>(200 + i));
  IdxArray labels;
  labels.dims = {3};
  labels.data = {7, 0, 255};
  const std::string ip = dir.file("images"), lp = dir.file("labels");
  dynamoe::data::write_idx(ip, images);
  dynamoe::data::write_idx(lp, labels);
  const dynamoe::data::ImageSet s = dynamoe::data::read_idx_images(ip, lp);
  EXPECT_EQ(s.n, 3);
  EXPECT_EQ(s.channels, 1);
  EXPECT_EQ(s.height, 2);
  EXPECT_EQ(s.width, 4);
  EXPECT_EQ(s.image_size(), 8);
  EXPECT_EQ(s.pixels, images.data);
  EXPECT_EQ(s.labels, labels.data);
}

TEST(DataIdx, ReadImagesRejectsMismatchAndWrongShapes) {
  ScratchDir dir;
  IdxArray images;
  images.dims = {3, 2, 2};
  images.data.assign(12, 1);
  IdxArray labels;
  labels.dims = {2};
  labels.data = {1, 2};
  const std::string ip = dir.file("images"), lp = dir.file("labels");
  dynamoe::data::write_idx(ip, images);
  dynamoe::data::write_idx(lp, labels);
  expect_error([&] { dynamoe::data::read_idx_images(ip, lp); }, {ip, lp, "2 labels", "3 images"});

  // Images that are not 3-dim.
  IdxArray flat;
  flat.dims = {12};
  flat.data.assign(12, 1);
  const std::string fp = dir.file("flat");
  dynamoe::data::write_idx(fp, flat);
  expect_error([&] { dynamoe::data::read_idx_images(fp, lp); }, {fp, "3 dims"});

  // Labels that are not uint8.
  const IdxArray wide = typed_array<int32_t>(dynamoe::data::kIdxInt32, {3}, {1, 2, 300});
  const std::string wp = dir.file("wide-labels");
  dynamoe::data::write_idx(wp, wide);
  expect_error([&] { dynamoe::data::read_idx_images(ip, wp); }, {wp, "uint8", "int32"});
}

TEST(DataIdx, IdxPathsPreferPlainThenGzip) {
  ScratchDir dir;
  const std::string root = dir.file("");
  dynamoe::data::IdxSplitPaths p = dynamoe::data::idx_paths(root);
  EXPECT_EQ(p.train_images, dir.file("train-images-idx3-ubyte"));
  EXPECT_EQ(p.train_labels, dir.file("train-labels-idx1-ubyte"));
  EXPECT_EQ(p.test_images, dir.file("t10k-images-idx3-ubyte"));
  EXPECT_EQ(p.test_labels, dir.file("t10k-labels-idx1-ubyte"));
  write_bytes(dir.file("train-images-idx3-ubyte.gz"), "x");
  write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), "x");
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), "x");
  p = dynamoe::data::idx_paths(root);
  EXPECT_EQ(p.train_images, dir.file("train-images-idx3-ubyte.gz"));
  EXPECT_EQ(p.test_labels, dir.file("t10k-labels-idx1-ubyte"));
}

}  // namespace

// A gzip IDX bomb: the header declares 10 bytes, the stream inflates to 512 MiB of zeros. The
// reader stops one byte past the declared size instead of inflating it all.
TEST(Idx, AGzipBombStopsAtTheDeclaredSize) {
  dynamoe::testutil::TempDir tmp;
  const std::string path = tmp / "bomb-idx1-ubyte.gz";
  {
    gzFile f = gzopen(path.c_str(), "wb1");
    ASSERT_NE(f, nullptr);
    const unsigned char header[8] = {0, 0, 0x08, 1, 0, 0, 0, 10};
    gzwrite(f, header, sizeof(header));
    const std::string zeros(1 << 20, '\0');
    for (int i = 0; i < 512; ++i) gzwrite(f, zeros.data(), static_cast<unsigned>(zeros.size()));
    gzclose(f);
  }
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  try {
    dynamoe::data::read_idx(path);
    ADD_FAILURE() << "a bomb was accepted";
  } catch (const dynamoe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("decompresses past the 10 data bytes its header declares"), std::string::npos)
        << e.what();
  }
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 100 * 1024) << "kB of peak memory added";
}

// A label byte above the data set's classes is an error naming the file, not a wider classifier:
// the published sets have 10 classes; a folder of IDX files has its train labels' classes.
TEST(DataIdx, LabelsAboveTheClassesAreErrors) {
  ScratchDir dir;
  dynamoe::testutil::write_synthetic_idx(dir.file("d"), 40, 20);
  dynamoe::config::DataConfig cfg;
  cfg.dataset = "idx";
  cfg.path = dir.file("d");
  EXPECT_EQ(dynamoe::data::load_data(cfg).spec.num_classes, 10);
  IdxArray labels;
  labels.dims = {20};
  labels.data.assign(20, 3);
  labels.data[7] = 12;
  dynamoe::data::write_idx(dir.file("d/t10k-labels-idx1-ubyte"), labels);
  expect_error([&] { dynamoe::data::load_data(cfg); },
               {dir.file("d/t10k-labels-idx1-ubyte"), "label 12 of example 7 is not a class of the train labels (0..9)"});
  labels.data[7] = 3;
  dynamoe::data::write_idx(dir.file("d/t10k-labels-idx1-ubyte"), labels);
  labels.dims = {40};
  labels.data.assign(40, 1);
  labels.data[39] = 200;
  dynamoe::data::write_idx(dir.file("d/train-labels-idx1-ubyte"), labels);
  cfg.dataset = "fashion-mnist";
  expect_error([&] { dynamoe::data::load_data(cfg); },
               {dir.file("d/train-labels-idx1-ubyte"), "label 200 of example 39 is not a class of fashion-mnist (0..9)"});
}

// The size in a gzip file's trailer is only a hint: a 207-byte file (found by the idx fuzzer)
// whose trailer says ~1 GiB used to reserve ~1 GiB before inflating a few hundred bytes.
TEST(DataIdx, GzipTrailerSizeIsNotTrustedForMemory) {
  const std::string bad = dynamoe::read_file(dynamoe::testutil::source_dir() +
                                             "/fuzz/corpus/idx/regression-gzip-size-hint-1GiB.idx");
  ASSERT_LT(bad.size(), 1000u);
  EXPECT_LT(dynamoe::gunzip_size_hint(bad, size_t{1} << 31), size_t{2} << 20);
  // An honest trailer is still used in full.
  std::string plain;
  for (int i = 0; plain.size() < (3u << 20); ++i) plain += "line " + std::to_string(i * 7919 % 100003) + "\n";
  uLongf n = compressBound(plain.size()) + 64;
  std::vector<Bytef> z(n);
  z_stream zs{};
  ASSERT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  zs.avail_in = static_cast<uInt>(plain.size());
  zs.next_out = z.data();
  zs.avail_out = static_cast<uInt>(z.size());
  ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  const std::string gz(reinterpret_cast<const char*>(z.data()), zs.total_out);
  deflateEnd(&zs);
  EXPECT_EQ(dynamoe::gunzip_size_hint(gz, size_t{1} << 31), plain.size());
  EXPECT_EQ(dynamoe::gunzip(gz, "honest"), plain);
}
