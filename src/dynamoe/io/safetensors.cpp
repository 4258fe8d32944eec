#include "dynamoe/io/safetensors.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <filesystem>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/json_text.h"

namespace dynamoe::io {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {at::kDouble, "F64"}, {at::kFloat, "F32"}, {at::kHalf, "F16"},  {at::kBFloat16, "BF16"},
    {at::kLong, "I64"},   {at::kInt, "I32"},   {at::kShort, "I16"}, {at::kChar, "I8"},
    {at::kByte, "U8"},    {at::kBool, "BOOL"},
};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw Error(str("safetensors: cannot store dtype ", c10::toString(t)));
}

at::ScalarType dtype_from(const std::string& name, const std::string& where, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw Error(str(where, ": tensor '", tensor, "' has unsupported dtype '", name, "'"));
}

}  // namespace

const at::Tensor& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  DYNAMOE_CHECK(it != tensors.end(), path, ": no tensor named '", name, "'");
  return it->second;
}

std::string safetensors_bytes(const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  data.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    DYNAMOE_CHECK(t.defined(), "safetensors: tensor '", name, "' is undefined");
    DYNAMOE_CHECK(name != "__metadata__" && !header.contains(name), "safetensors: duplicate name '", name, "'");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    uint64_t nbytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t hlen = h.size();
  out.append(reinterpret_cast<const char*>(&hlen), 8);
  out += h;
  for (const auto& c : data)
    out.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * c.element_size());
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, safetensors_bytes(tensors, metadata));
}

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& where) {
  SafetensorsFile f;
  f.path = where;
  DYNAMOE_CHECK(bytes.size() >= 8, where, ": truncated safetensors file (", bytes.size(),
                " bytes, the header length alone takes 8)");
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  DYNAMOE_CHECK(hlen <= kMaxSafetensorsHeader, where, ": header length ", hlen, " is over the ",
                kMaxSafetensorsHeader, "-byte limit (not safetensors, or hostile)");
  DYNAMOE_CHECK(hlen <= bytes.size() - 8, where, ": header length ", hlen,
                " exceeds the file size ", bytes.size(), " (truncated or not safetensors)");
  const uint64_t data_start = 8 + hlen;
  const uint64_t data_size = bytes.size() - data_start;
  const nlohmann::json header =
      parse_json(std::string_view(bytes).substr(8, hlen), str(where, ": safetensors header"));
  DYNAMOE_CHECK(header.is_object(), where, ": safetensors header is not a JSON object");
  std::vector<std::pair<uint64_t, std::string>> order;
  uint64_t covered = 0;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      DYNAMOE_CHECK(it->is_object(), where, ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        DYNAMOE_CHECK(m->is_string(), where, ": __metadata__ value of '", m.key(), "' is not a string");
        f.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& e = *it;
    DYNAMOE_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets") &&
                      e["dtype"].is_string() && e["shape"].is_array() && e["data_offsets"].is_array() &&
                      e["data_offsets"].size() == 2,
                  where, ": malformed header entry for tensor '", name, "'");
    at::ScalarType type = dtype_from(e["dtype"].get<std::string>(), where, name);
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      DYNAMOE_CHECK(d.is_number_unsigned(), where, ": tensor '", name, "' has a bad shape entry ", json_excerpt(d));
      uint64_t v = d.get<uint64_t>();
      DYNAMOE_CHECK(v < (1ull << 40), where, ": tensor '", name, "' dimension ", v, " is too large");
      // checked before multiplying: [2^32, 2^32] must not wrap around to 0 elements
      DYNAMOE_CHECK(v == 0 || numel < (1ull << 48) / v, where, ": tensor '", name, "' has too many elements");
      numel *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    DYNAMOE_CHECK(e["data_offsets"][0].is_number_unsigned() && e["data_offsets"][1].is_number_unsigned(),
                  where, ": tensor '", name, "' has bad data_offsets");
    uint64_t begin = e["data_offsets"][0].get<uint64_t>(), end = e["data_offsets"][1].get<uint64_t>();
    const uint64_t esize = c10::elementSize(type);
    DYNAMOE_CHECK(begin <= end && end <= data_size, where, ": tensor '", name, "' data [", begin, ", ", end,
                  ") lies outside the ", data_size, " data bytes (truncated file?)");
    DYNAMOE_CHECK(end - begin == numel * esize, where, ": tensor '", name, "' holds ", end - begin,
                  " bytes but its dtype and shape need ", numel * esize);
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
    if (end > begin) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, end - begin);
    f.tensors[name] = t;
    order.emplace_back(begin, name);
    covered += end - begin;
  }
  DYNAMOE_CHECK(covered == data_size, where, ": tensors cover ", covered, " of ", data_size,
                " data bytes (overlapping or trailing data)");
  std::sort(order.begin(), order.end());
  for (const auto& o : order) f.names.push_back(o.second);
  return f;
}

void check_safetensors_file(const std::string& path) {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return;  // read_file names the problem
  std::ifstream in(path, std::ios::binary);
  char len[8] = {};
  if (size < 8 || !in.read(len, 8)) return;  // parse_safetensors reports the truncation
  uint64_t hlen = 0;
  std::memcpy(&hlen, len, 8);
  DYNAMOE_CHECK(hlen <= kMaxSafetensorsHeader, path, ": header length ", hlen, " is over the ",
                kMaxSafetensorsHeader, "-byte limit (not safetensors, or hostile)");
  DYNAMOE_CHECK(hlen <= size - 8, path, ": header length ", hlen, " exceeds the file size ", size,
                " (truncated or not safetensors)");
  std::string header(hlen, '\0');
  DYNAMOE_CHECK(in.read(header.data(), static_cast<std::streamsize>(hlen)), "error while reading '", path, "'");
  const nlohmann::json h = parse_json(header, str(path, ": safetensors header"));
  if (!h.is_object()) return;  // parse_safetensors names it
  uint64_t last = 0;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__" || !it->is_object() || !it->contains("data_offsets")) continue;
    const auto& off = (*it)["data_offsets"];
    if (off.is_array() && off.size() == 2 && off[1].is_number_unsigned()) last = std::max(last, off[1].get<uint64_t>());
  }
  const uint64_t data = size - 8 - hlen;
  DYNAMOE_CHECK(last <= data, path, ": its tensors need ", last, " data bytes but the file holds ", data,
                " (truncated?)");
  DYNAMOE_CHECK(last == data, path, ": ", data - last, " bytes of trailing data after the last tensor (not a "
                "safetensors file written whole)");
}

SafetensorsFile load_safetensors(const std::string& path) {
  check_safetensors_file(path);
  return parse_safetensors(read_file(path), path);
}

}  // namespace dynamoe::io
