// The fuzz smoke run of `make test`: every fuzz target of fuzz/targets, built with the ordinary
// compiler, gets its seed corpus and then deterministic mutations of it (bit flips, interesting
// bytes and numbers, cuts, insertions, duplicated chunks, splices, deep nesting). Not a
// substitute for `make fuzz` (no coverage feedback, no sanitizers): it keeps the targets building
// and catches a parser that regresses on inputs near the seeds, in seconds.
//
//   dynamoe_fuzz_smoke <target> <seed folder> [--runs N] [--seed S]
//
// On a failure the input is written to fuzz-smoke-<target>.crash in the working folder (replay it
// with the libFuzzer build: build-fuzz/fuzz_<target> fuzz-smoke-<target>.crash).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "fuzz_target.h"

namespace {

using Bytes = std::string;

std::string g_crash_path;  // where the current input goes if the run dies
Bytes g_current;           // the input being run

void save_current() {
  const int fd = ::open(g_crash_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_current.size()) {
    const ssize_t n = ::write(fd, g_current.data() + done, g_current.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

extern "C" void on_fatal_signal(int sig) {
  save_current();  // open/write/close are async-signal-safe
  const char msg[] = "fuzz smoke: the target died on a signal; its input is in the .crash file\n";
  (void)!::write(2, msg, sizeof(msg) - 1);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

Bytes read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

const char* const kNumbers[] = {"0",          "-1",         "1",          "255",    "65536",   "2147483647",
                                "2147483648", "4294967295", "4294967296", "-2147483649",
                                "9223372036854775807",      "18446744073709551615", "99999999999999999999999",
                                "1e308",      "-1e308",     "1e-320",     "nan",    "inf",     "0.5",  "-0"};
const unsigned char kBytes[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, '0', '9', '"', '[', ']', '{', '}', ',', ':', '\n', '\\', ' '};

// One mutation of `b` (an empty input grows a byte).
void mutate(Bytes& b, const std::vector<Bytes>& seeds, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  switch (rng() % 10) {
    case 0:  // flip a bit
      if (!b.empty()) b[pick(b.size())] ^= static_cast<char>(1u << (rng() % 8));
      break;
    case 1:  // an interesting byte
      if (!b.empty()) b[pick(b.size())] = static_cast<char>(kBytes[pick(sizeof(kBytes))]);
      break;
    case 2: {  // delete a range
      if (b.empty()) break;
      const size_t at = pick(b.size());
      b.erase(at, 1 + pick(std::min<size_t>(16, b.size() - at)));
      break;
    }
    case 3: {  // insert random bytes
      Bytes ins(1 + pick(8), '\0');
      for (char& c : ins) c = static_cast<char>(rng());
      b.insert(pick(b.size() + 1), ins);
      break;
    }
    case 4:  // cut short
      b.resize(pick(b.size() + 1));
      break;
    case 5: {  // duplicate a chunk
      if (b.empty()) break;
      const size_t from = pick(b.size()), len = 1 + pick(std::min<size_t>(64, b.size() - from));
      const Bytes chunk = b.substr(from, len);
      const size_t times = 1 + pick(rng() % 8 == 0 ? 2000 : 4);
      Bytes rep;
      for (size_t i = 0; i < times; ++i) rep += chunk;
      b.insert(pick(b.size() + 1), rep);
      break;
    }
    case 6: {  // a number where a number was
      size_t at = pick(b.size() + 1), end = at;
      while (at < b.size() && !std::isdigit(static_cast<unsigned char>(b[at]))) ++at;
      end = at;
      while (end < b.size() && (std::isdigit(static_cast<unsigned char>(b[end])) || b[end] == '.')) ++end;
      const char* n = kNumbers[pick(std::size(kNumbers))];
      if (at < b.size())
        b.replace(at, end - at, n);
      else
        b.insert(pick(b.size() + 1), n);
      break;
    }
    case 7: {  // splice with another seed
      const Bytes& other = seeds[pick(seeds.size())];
      b = b.substr(0, pick(b.size() + 1)) + other.substr(pick(other.size() + 1));
      break;
    }
    case 8: {  // deep nesting
      const char* open[] = {"[", "{\"a\":", "- ", "{a: "};
      const Bytes unit = open[pick(std::size(open))];
      Bytes deep;
      const size_t depth = rng() % 4 == 0 ? 100000 : 1 + pick(300);
      for (size_t i = 0; i < depth; ++i) deep += unit;
      b.insert(pick(b.size() + 1), deep);
      break;
    }
    default: {  // overwrite 1-8 bytes at a random place with random bytes
      if (b.empty()) break;
      const size_t at = pick(b.size());
      for (size_t i = at; i < std::min(b.size(), at + 1 + pick(8)); ++i) b[i] = static_cast<char>(rng());
      break;
    }
  }
  if (b.size() > (1u << 22)) b.resize(1u << 22);
}

int usage() {
  std::fprintf(stderr, "usage: dynamoe_fuzz_smoke <target> <seed folder> [--runs N] [--seed S]\ntargets:");
  for (const auto& t : dynamoe::fuzz::targets()) std::fprintf(stderr, " %s", t.name);
  std::fprintf(stderr, "\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string name = argv[1];
  const std::filesystem::path seed_dir = argv[2];
  long runs = 3000;
  uint64_t seed = 1;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::stol(argv[i + 1]);
    else if (std::strcmp(argv[i], "--seed") == 0) seed = std::stoull(argv[i + 1]);
    else return usage();
  }
  dynamoe::fuzz::TargetFn fn = nullptr;
  for (const auto& t : dynamoe::fuzz::targets())
    if (name == t.name) fn = t.fn;
  if (fn == nullptr) return usage();

  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(seed_dir, ec))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "fuzz smoke: %s holds no seed files\n", seed_dir.c_str());
    return 2;
  }
  std::vector<Bytes> seeds;
  for (const auto& f : files) seeds.push_back(read_bytes(f));

  g_crash_path = "fuzz-smoke-" + name + ".crash";
  std::signal(SIGSEGV, on_fatal_signal);
  std::signal(SIGABRT, on_fatal_signal);
  std::signal(SIGBUS, on_fatal_signal);
  std::signal(SIGFPE, on_fatal_signal);

  std::mt19937_64 rng(seed);
  const auto t0 = std::chrono::steady_clock::now();
  long done = 0;
  try {
    for (long r = 0; r < static_cast<long>(seeds.size()) + runs; ++r) {
      if (r < static_cast<long>(seeds.size())) {
        g_current = seeds[static_cast<size_t>(r)];
      } else {
        g_current = seeds[rng() % seeds.size()];
        for (int m = 0, n = 1 + static_cast<int>(rng() % 4); m < n; ++m) mutate(g_current, seeds, rng);
      }
      fn(reinterpret_cast<const uint8_t*>(g_current.data()), g_current.size());
      ++done;
    }
  } catch (const std::exception& e) {
    save_current();
    std::string what = e.what();
    if (what.size() > 300) what = what.substr(0, 300) + "...";
    std::fprintf(stderr, "fuzz smoke: %s: input %ld threw \"%s\" (not a dynamoe::Error); input saved to %s\n",
                 name.c_str(), done, what.c_str(), g_crash_path.c_str());
    return 1;
  } catch (...) {
    save_current();
    std::fprintf(stderr, "fuzz smoke: %s: input %ld threw a non-standard exception; input saved to %s\n", name.c_str(),
                 done, g_crash_path.c_str());
    return 1;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("fuzz smoke %s: %ld inputs (%zu seeds + %ld mutations) in %.2f s, no failure\n", name.c_str(), done,
              seeds.size(), runs, s);
  return 0;
}
