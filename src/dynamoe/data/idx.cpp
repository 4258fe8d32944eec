#include "dynamoe/data/idx.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string_view>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/gzip.h"

namespace dynamoe::data {
namespace {

namespace fs = std::filesystem;

constexpr bool kHostIsLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

std::string hex_byte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02x", b);
  return buf;
}

// Reverses the bytes of every element of `elem` bytes in place (big-endian <-> little-endian).
void swap_elements(uint8_t* data, size_t n_bytes, size_t elem) {
  if (elem == 1 || !kHostIsLittleEndian) return;
  for (size_t i = 0; i + elem <= n_bytes; i += elem) std::reverse(data + i, data + i + elem);
}

std::string dims_string(const std::vector<int64_t>& dims) {
  if (dims.empty()) return "scalar";
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s;
}

// Product of dims times the element size, or throws when it does not fit in 2^62.
uint64_t data_bytes(const std::vector<int64_t>& dims, size_t elem, const std::string& where) {
  constexpr uint64_t kLimit = uint64_t{1} << 62;
  uint64_t n = elem;
  for (int64_t d : dims) {
    DYNAMOE_CHECK(d >= 0, where, ": negative dimension ", d);
    if (d != 0 && n > kLimit / static_cast<uint64_t>(d))
      throw Error(str(where, ": dims ", dims_string(dims), " are too large"));
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

}  // namespace

size_t idx_element_size(uint8_t type_code) {
  switch (type_code) {
    case kIdxUint8:
    case kIdxInt8:
      return 1;
    case kIdxInt16:
      return 2;
    case kIdxInt32:
    case kIdxFloat32:
      return 4;
    case kIdxFloat64:
      return 8;
    default:
      throw Error(str("unknown IDX type code ", hex_byte(type_code),
                      " (expected 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e)"));
  }
}

std::string idx_type_name(uint8_t type_code) {
  switch (type_code) {
    case kIdxUint8: return "uint8";
    case kIdxInt8: return "int8";
    case kIdxInt16: return "int16";
    case kIdxInt32: return "int32";
    case kIdxFloat32: return "float32";
    case kIdxFloat64: return "float64";
    default: return "unknown(" + hex_byte(type_code) + ")";
  }
}

int64_t IdxArray::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

IdxArray read_idx(const std::string& path) {
  std::string raw = read_file(path);
  const bool gz = is_gzip(raw);
  const std::string where = str("IDX file '", path, "'");
  bool capped = false;  // decompression stopped one byte past the size the header declares
  if (gz) {
    // The header first (at most 4 + 4 * 255 bytes), then no more than the data it declares and
    // one byte: a decompression bomb is never inflated.
    const size_t max_header = 4 + 4 * 255;
    std::string head = gunzip(raw, where, max_header);
    size_t limit = 0;
    if (head.size() == max_header && head[0] == 0 && head[1] == 0) {
      const size_t nd = static_cast<uint8_t>(head[3]);
      std::vector<int64_t> dims;
      for (size_t i = 0; i < nd; ++i) {
        const auto* p = reinterpret_cast<const uint8_t*>(head.data() + 4 + 4 * i);
        dims.push_back((int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | p[3]);
      }
      try {
        limit = 4 + 4 * nd + data_bytes(dims, idx_element_size(static_cast<uint8_t>(head[2])), where) + 1;
      } catch (const Error&) {
        limit = 0;  // a bad header: the checks below name it
      }
    }
    if (limit > 0) {
      raw = gunzip(raw, where, limit);
      capped = raw.size() == limit;
    } else {
      raw = std::move(head);
    }
  }
  const char* off_kind = gz ? "decompressed byte offset " : "byte offset ";
  const auto* b = reinterpret_cast<const uint8_t*>(raw.data());
  const size_t size = raw.size();

  DYNAMOE_CHECK(size >= 4, where, ": truncated header: ", size,
                " bytes, expected at least 4 (magic 00 00 <type> <ndims>)");
  DYNAMOE_CHECK(b[0] == 0 && b[1] == 0, where, ": bad magic ", hex_byte(b[0]), " ",
                hex_byte(b[1]), " at ", off_kind, "0 (expected 0x00 0x00; not an IDX file)");
  IdxArray a;
  a.type_code = b[2];
  size_t elem = 0;
  try {
    elem = idx_element_size(a.type_code);
  } catch (const Error& e) {
    throw Error(str(where, ": ", e.what(), " at ", off_kind, "2"));
  }
  const size_t ndims = b[3];
  const size_t header = 4 + 4 * ndims;
  DYNAMOE_CHECK(size >= header, where, ": truncated header: ", ndims, " dims need ", header,
                " bytes, file has ", size);
  a.dims.resize(ndims);
  for (size_t i = 0; i < ndims; ++i) {
    const uint8_t* p = b + 4 + 4 * i;
    const uint32_t d = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    a.dims[i] = static_cast<int64_t>(d);
  }
  const uint64_t expected = data_bytes(a.dims, elem, where);
  const uint64_t got = size - header;
  const std::string decl = str("header declares ", dims_string(a.dims), " ",
                               idx_type_name(a.type_code), " = ", expected, " data bytes");
  DYNAMOE_CHECK(got >= expected, where, ": truncated data: ", decl, " after ", off_kind,
                header, ", file has only ", got);
  DYNAMOE_CHECK(!capped, where, ": decompresses past the ", expected,
                " data bytes its header declares (", decl, "; stopped after ", size,
                " decompressed bytes: trailing data or a decompression bomb)");
  DYNAMOE_CHECK(got == expected, where, ": ", got - expected, " trailing bytes at ", off_kind,
                header + expected, " (", decl, ")");
  a.data.assign(b + header, b + size);
  swap_elements(a.data.data(), a.data.size(), elem);
  return a;
}

void write_idx(const std::string& path, const IdxArray& a) {
  const std::string where = str("cannot write IDX file '", path, "'");
  size_t elem = 0;
  try {
    elem = idx_element_size(a.type_code);
  } catch (const Error& e) {
    throw Error(str(where, ": ", e.what()));
  }
  DYNAMOE_CHECK(a.dims.size() <= 255, where, ": ", a.dims.size(), " dims, IDX allows at most 255");
  for (int64_t d : a.dims)
    DYNAMOE_CHECK(d >= 0 && d <= int64_t{std::numeric_limits<uint32_t>::max()}, where,
                  ": dimension ", d, " does not fit in 32 bits");
  const uint64_t expected = data_bytes(a.dims, elem, where);
  DYNAMOE_CHECK(a.data.size() == expected, where, ": dims ", dims_string(a.dims), " ",
                idx_type_name(a.type_code), " need ", expected, " data bytes, got ", a.data.size());
  std::string out;
  out.reserve(4 + 4 * a.dims.size() + a.data.size());
  out.push_back('\0');
  out.push_back('\0');
  out.push_back(static_cast<char>(a.type_code));
  out.push_back(static_cast<char>(a.dims.size()));
  for (int64_t d : a.dims) {
    const auto u = static_cast<uint32_t>(d);
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((u >> shift) & 0xff));
  }
  const size_t header = out.size();
  out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  swap_elements(reinterpret_cast<uint8_t*>(&out[header]), a.data.size(), elem);
  write_file_atomic(path, out);
}

ImageSet read_idx_images(const std::string& images_path, const std::string& labels_path) {
  IdxArray images = read_idx(images_path);
  DYNAMOE_CHECK(images.type_code == kIdxUint8, "IDX image file '", images_path,
                "': expected uint8 (type 0x08), got ", idx_type_name(images.type_code));
  DYNAMOE_CHECK(images.dims.size() == 3, "IDX image file '", images_path,
                "': expected 3 dims (N x H x W), got ", images.dims.size(), " (",
                dims_string(images.dims), ")");
  DYNAMOE_CHECK(images.dims[1] > 0 && images.dims[2] > 0, "IDX image file '", images_path,
                "': images of ", dims_string(images.dims), " have no pixels");
  IdxArray labels = read_idx(labels_path);
  DYNAMOE_CHECK(labels.type_code == kIdxUint8, "IDX label file '", labels_path,
                "': expected uint8 (type 0x08), got ", idx_type_name(labels.type_code));
  DYNAMOE_CHECK(labels.dims.size() == 1, "IDX label file '", labels_path,
                "': expected 1 dim (N), got ", labels.dims.size(), " (", dims_string(labels.dims),
                ")");
  DYNAMOE_CHECK(labels.dims[0] == images.dims[0], "IDX label file '", labels_path, "' holds ",
                labels.dims[0], " labels but image file '", images_path, "' holds ",
                images.dims[0], " images");
  // Labels are uint8, so every label is < 256 by construction.
  ImageSet s;
  s.n = images.dims[0];
  s.channels = 1;
  s.height = images.dims[1];
  s.width = images.dims[2];
  s.pixels = std::move(images.data);
  s.labels = std::move(labels.data);
  return s;
}

IdxSplitPaths idx_paths(const std::string& dataset_dir) {
  auto pick = [&](const char* name) {
    const fs::path plain = fs::path(dataset_dir) / name;
    std::error_code ec;
    if (fs::exists(plain, ec)) return plain.string();
    fs::path gz = plain;
    gz += ".gz";
    if (fs::exists(gz, ec)) return gz.string();
    return plain.string();
  };
  IdxSplitPaths p;
  p.train_images = pick("train-images-idx3-ubyte");
  p.train_labels = pick("train-labels-idx1-ubyte");
  p.test_images = pick("t10k-images-idx3-ubyte");
  p.test_labels = pick("t10k-labels-idx1-ubyte");
  return p;
}

}  // namespace dynamoe::data
