#pragma once
// safetensors: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then raw little-endian data.
// Tensor names follow PyTorch state_dict naming ("layers.0.weight").
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dynamoe::io {

/// Named tensors in a fixed order (the order they are written in).
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// A loaded file: tensors by name, their order in the file, and the metadata.
struct SafetensorsFile {
  std::map<std::string, at::Tensor> tensors;
  std::vector<std::string> names;  ///< in data-offset order
  std::map<std::string, std::string> metadata;
  /// The tensor called `name`; throws dynamoe::Error naming the file when absent.
  const at::Tensor& at(const std::string& name) const;
  std::string path;
};

/// Serialises tensors (moved to CPU, made contiguous) into safetensors bytes.
std::string safetensors_bytes(const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata = {});
/// Writes a safetensors file atomically.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// Parses safetensors bytes; `where` names the source in errors. Every offset, dtype and
/// shape is checked against the buffer before any data is read.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& where);
/// Reads and parses a safetensors file.
SafetensorsFile load_safetensors(const std::string& path);

/// Headers longer than this are refused (as the reference safetensors library does).
constexpr uint64_t kMaxSafetensorsHeader = 100000000;
/// Checks a safetensors file's size against its header before its data is read: a header over
/// kMaxSafetensorsHeader, tensors that need more bytes than the file has, or bytes past the
/// last tensor are one-line errors, in time and memory bounded by the header.
void check_safetensors_file(const std::string& path);

}  // namespace dynamoe::io
