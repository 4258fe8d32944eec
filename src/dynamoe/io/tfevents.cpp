#include "dynamoe/io/tfevents.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::io {
namespace {

// --- protobuf wire format: only what Event needs ---------------------------------------------

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_key(std::string& out, int field, int wire) { put_varint(out, static_cast<uint64_t>(field) << 3 | wire); }
template <class T>
void put_fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts (x86-64)
  out.append(b, sizeof(T));
}
void put_double(std::string& out, int field, double v) {
  put_key(out, field, 1);
  put_fixed(out, v);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
void put_packed_doubles(std::string& out, int field, const std::vector<double>& v) {
  std::string body;
  for (double x : v) put_fixed(body, x);
  put_bytes(out, field, body);
}

std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) {
    put_key(e, 2, 0);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

uint64_t get_varint(const std::string& s, size_t& at, const std::string& where, size_t base) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    DYNAMOE_CHECK(at < s.size(), where, ": byte ", base + at, ": truncated varint in an event");
    const uint8_t b = static_cast<uint8_t>(s[at++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  throw Error(str(where, ": byte ", base + at, ": varint longer than 10 bytes in an event"));
}

/// The step field (2) of a serialized Event; 0 when absent.
int64_t event_step(const std::string& e, const std::string& where, size_t base) {
  size_t at = 0;
  int64_t step = 0;
  while (at < e.size()) {
    const uint64_t key = get_varint(e, at, where, base);
    const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (wire == 0) {
      const uint64_t v = get_varint(e, at, where, base);
      if (field == 2) step = static_cast<int64_t>(v);
    } else if (wire == 1 || wire == 5) {
      const size_t n = wire == 1 ? 8 : 4;
      DYNAMOE_CHECK(e.size() - at >= n, where, ": byte ", base + at, ": truncated fixed field in an event");
      at += n;
    } else if (wire == 2) {
      const uint64_t n = get_varint(e, at, where, base);
      DYNAMOE_CHECK(n <= e.size() - at, where, ": byte ", base + at, ": field of ", n, " bytes runs past its event");
      at += n;
    } else {
      throw Error(str(where, ": byte ", base + at, ": unsupported protobuf wire type ", wire, " in an event"));
    }
  }
  return step;
}

uint32_t load_u32(const std::string& s, size_t at) {
  uint32_t v;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& data) {
  std::string out;
  const uint64_t len = data.size();
  put_fixed(out, len);
  put_fixed(out, masked_crc32c(&len, sizeof(len)));
  out += data;
  put_fixed(out, masked_crc32c(data.data(), data.size()));
  return out;
}

std::string file_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string scalar_event(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string v;
    put_bytes(v, 1, tag);
    put_key(v, 2, 5);
    put_fixed(v, value);
    put_bytes(summary, 1, v);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string histogram_event(double wall_time, int64_t step, const std::string& tag, const Histogram& h) {
  DYNAMOE_CHECK(h.limits.size() == h.counts.size(), "histogram ", tag, ": ", h.limits.size(), " limits for ",
                h.counts.size(), " buckets");
  std::string histo;
  put_double(histo, 1, h.min);
  put_double(histo, 2, h.max);
  put_double(histo, 3, h.num);
  put_double(histo, 4, h.sum);
  put_double(histo, 5, h.sum_squares);
  put_packed_doubles(histo, 6, h.limits);
  put_packed_doubles(histo, 7, h.counts);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 5, histo);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::vector<std::pair<int64_t, std::string>> read_event_records(const std::string& bytes, const std::string& where) {
  std::vector<std::pair<int64_t, std::string>> out;
  size_t at = 0;
  while (at < bytes.size()) {
    DYNAMOE_CHECK(bytes.size() - at >= 12, where, ": byte ", at, ": truncated record header");
    uint64_t len;
    std::memcpy(&len, bytes.data() + at, 8);
    DYNAMOE_CHECK(load_u32(bytes, at + 8) == masked_crc32c(bytes.data() + at, 8), where, ": byte ", at,
                  ": record length checksum mismatch");
    DYNAMOE_CHECK(len <= bytes.size() - at - 12 && bytes.size() - at - 12 - len >= 4, where, ": byte ", at,
                  ": record of ", len, " bytes runs past the end of the file");
    const std::string data = bytes.substr(at + 12, len);
    DYNAMOE_CHECK(load_u32(bytes, at + 12 + len) == masked_crc32c(data.data(), data.size()), where, ": byte ", at,
                  ": record data checksum mismatch");
    out.emplace_back(event_step(data, where, at + 12), bytes.substr(at, 16 + len));
    at += 16 + len;
  }
  return out;
}

EventFile::EventFile(const std::string& path, int64_t keep_to_step) : path_(path) {
  std::error_code ec;
  std::string kept;
  if (keep_to_step >= 0 && std::filesystem::exists(path, ec)) {
    // A torn last record (a killed process) ends the events kept; the rest must be whole.
    std::string bytes = read_file(path);
    std::vector<std::pair<int64_t, std::string>> records;
    try {
      records = read_event_records(bytes, path);
    } catch (const Error&) {
      records.clear();
      size_t at = 0;
      while (bytes.size() - at >= 16) {  // keep the whole records before the damage
        uint64_t len;
        std::memcpy(&len, bytes.data() + at, 8);
        if (len > bytes.size() - at - 16) break;
        try {
          auto one = read_event_records(bytes.substr(at, 16 + len), path);
          records.insert(records.end(), one.begin(), one.end());
        } catch (const Error&) {
          break;
        }
        at += 16 + len;
      }
    }
    for (size_t i = 0; i < records.size(); ++i)
      if (i == 0 || records[i].first <= keep_to_step) kept += records[i].second;  // record 0: file_version
  }
  if (kept.empty()) {
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    kept = tfrecord(file_version_event(now));
  }
  write_file_atomic(path, kept);
  f_ = std::fopen(path.c_str(), "ab");
  DYNAMOE_CHECK(f_, "cannot open '", path, "' for appending: ", std::strerror(errno));
}

EventFile::~EventFile() {
  if (f_) std::fclose(f_);
}

void EventFile::write(const std::vector<std::string>& events) {
  std::string bytes;
  for (const auto& e : events) bytes += tfrecord(e);
  if (std::fwrite(bytes.data(), 1, bytes.size(), f_) != bytes.size() || std::fflush(f_) != 0)
    throw Error(str("could not write ", path_, ": ", std::strerror(errno)));
}

}  // namespace dynamoe::io
