#include "dynamoe/data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/hash.h"

namespace dynamoe::data {
namespace {

namespace fs = std::filesystem;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token files are little-endian; add a byte swap");

// meta[split][key] as a non-negative integer, or an error naming meta.json.
int64_t meta_count(const nlohmann::json& meta, const std::string& meta_path, const char* split, const char* key) {
  const auto& s = meta.at("splits").at(split);
  DYNAMOE_CHECK(s.contains(key) && s.at(key).is_number_integer() && s.at(key).get<int64_t>() >= 0, meta_path,
                ": splits.", split, ".", key, " is missing or not a non-negative integer");
  return s.at(key).get<int64_t>();
}

}  // namespace

TokenFile::TokenFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DYNAMOE_CHECK(fd >= 0, path, ": cannot open token file: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(str(path, ": cannot stat token file: ", std::strerror(err)));
  }
  const auto bytes = static_cast<uint64_t>(st.st_size);
  if (bytes % 2 != 0) {
    ::close(fd);
    throw Error(str(path, ": ", bytes, " bytes is an odd size; a token file holds 2 bytes (uint16) per token ",
                    "(truncated or not a token file?)"));
  }
  if (bytes > 0) {
    void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(str(path, ": cannot memory-map ", bytes, " bytes: ", std::strerror(err)));
    }
    data_ = static_cast<const uint16_t*>(p);
    mapped_bytes_ = bytes;
    size_ = static_cast<int64_t>(bytes / 2);
  }
  ::close(fd);  // the mapping stays valid
}

void TokenFile::release() {
  if (data_) ::munmap(const_cast<uint16_t*>(data_), mapped_bytes_);
  data_ = nullptr;
  size_ = 0;
  mapped_bytes_ = 0;
}

TokenFile::~TokenFile() { release(); }

TokenFile::TokenFile(TokenFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_), mapped_bytes_(other.mapped_bytes_) {
  other.data_ = nullptr;
  other.size_ = 0;
  other.mapped_bytes_ = 0;
}

TokenFile& TokenFile::operator=(TokenFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    mapped_bytes_ = other.mapped_bytes_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.mapped_bytes_ = 0;
  }
  return *this;
}

std::string token_file_checksum(const TokenFile& f) {
  return fnv1a64_hex(std::string_view(reinterpret_cast<const char*>(f.data()), static_cast<size_t>(f.size()) * 2));
}

void write_token_file(const std::string& path, const std::vector<int32_t>& ids) {
  std::string bytes(ids.size() * 2, '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    DYNAMOE_CHECK(id >= 0 && id <= 0xFFFF, path, ": token ", id, " at position ", i,
                  " does not fit in uint16 (0..65535); nothing written");
    bytes[2 * i] = static_cast<char>(id & 0xFF);
    bytes[2 * i + 1] = static_cast<char>(id >> 8);
  }
  write_file_atomic(path, bytes);
}

TokenCorpus open_token_corpus(const std::string& dir, const std::string& expected_tokenizer) {
  const std::string meta_path = (fs::path(dir) / "meta.json").string();
  std::error_code ec;
  DYNAMOE_CHECK(fs::is_regular_file(meta_path, ec), meta_path,
                ": missing (not a token corpus folder: `dynamoe data fetch <corpus>` makes one)");
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(read_file(meta_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(meta_path, ": not valid JSON (", e.what(), ")"));
  }
  auto need = [&](bool ok, const std::string& what) { DYNAMOE_CHECK(ok, meta_path, ": ", what); };
  need(meta.is_object(), "not a JSON object");
  need(meta.contains("vocab_size") && meta["vocab_size"].is_number_integer() && meta["vocab_size"].get<int64_t>() > 0 &&
           meta["vocab_size"].get<int64_t>() <= 65536,
       "vocab_size is missing or not an integer in 1..65536");
  need(meta.contains("eot_id") && meta["eot_id"].is_number_integer(), "eot_id is missing or not an integer");
  need(meta.contains("tokenizer") && meta["tokenizer"].is_string(), "tokenizer is missing or not a string");
  need(meta.contains("splits") && meta["splits"].is_object(), "splits is missing or not an object");

  const auto vocab = static_cast<int32_t>(meta["vocab_size"].get<int64_t>());
  need(meta["eot_id"].get<int64_t>() >= 0 && meta["eot_id"].get<int64_t>() < vocab,
       str("eot_id ", meta["eot_id"].dump(), " is not a token of the vocabulary (0..", vocab - 1, ")"));
  need(expected_tokenizer.empty() || meta["tokenizer"].get<std::string>() == expected_tokenizer,
       str("tokenizer is '", meta["tokenizer"].get<std::string>(), "' but data.tokenizer is '", expected_tokenizer,
           "' (a corpus of another tokenizer in this folder?)"));
  auto open_split = [&](const char* split) {
    need(meta["splits"].contains(split) && meta["splits"][split].is_object(), str("splits.", split, " is missing"));
    const int64_t tokens = meta_count(meta, meta_path, split, "tokens");
    const auto& s = meta["splits"][split];
    need(s.contains("checksum") && s["checksum"].is_string(), str("splits.", split, ".checksum is missing"));
    const std::string path = (fs::path(dir) / (std::string(split) + ".bin")).string();
    TokenFile f(path);
    DYNAMOE_CHECK(f.size() == tokens, path, ": ", f.size() * 2, " bytes, expected 2 x ", tokens, " tokens",
                  f.size() < tokens ? " (truncated?)" : " (a different file than meta.json describes?)");
    const std::string sum = token_file_checksum(f);
    DYNAMOE_CHECK(sum == s["checksum"].get<std::string>(), path, ": checksum fnv1a64 ", sum, " does not match ",
                  s["checksum"].get<std::string>(), " in meta.json (the file is corrupt or was changed)");
    const uint16_t* ids = f.data();
    for (int64_t i = 0; i < f.size(); ++i)
      DYNAMOE_CHECK(ids[i] < vocab, path, ": token ", ids[i], " at position ", i, " is out of range for vocab ", vocab);
    return f;
  };
  TokenFile train = open_split("train");
  TokenFile val = open_split("val");
  TokenCorpus c{std::move(train), std::move(val), meta, vocab, static_cast<int32_t>(meta["eot_id"].get<int64_t>()),
                meta["tokenizer"].get<std::string>(), dir};
  return c;
}

}  // namespace dynamoe::data
