#pragma once
// IDX arrays (the MNIST file format) and image sets read from pairs of IDX files.
//
// IDX layout: magic 00 00 <type code> <ndims>, then ndims big-endian uint32 sizes, then the
// elements in row-major order, each big-endian. Files may be gzip-compressed (detected by the
// gzip magic 1f 8b, never by the file name).
//
// Usage:
//   dynamoe::data::ImageSet train = dynamoe::data::read_idx_images(
//       dynamoe::data::idx_paths("data/fashion-mnist").train_images,
//       dynamoe::data::idx_paths("data/fashion-mnist").train_labels);
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dynamoe::data {

/// IDX type code of unsigned bytes (MNIST images and labels).
inline constexpr uint8_t kIdxUint8 = 0x08;
/// IDX type code of signed bytes.
inline constexpr uint8_t kIdxInt8 = 0x09;
/// IDX type code of 16-bit signed integers.
inline constexpr uint8_t kIdxInt16 = 0x0B;
/// IDX type code of 32-bit signed integers.
inline constexpr uint8_t kIdxInt32 = 0x0C;
/// IDX type code of 32-bit IEEE floats.
inline constexpr uint8_t kIdxFloat32 = 0x0D;
/// IDX type code of 64-bit IEEE floats.
inline constexpr uint8_t kIdxFloat64 = 0x0E;

/// Bytes per element of an IDX type code (1, 1, 2, 4, 4, 8); throws dynamoe::Error for an
/// unknown code.
size_t idx_element_size(uint8_t type_code);

/// Name of an IDX type code ("uint8", "int8", "int16", "int32", "float32", "float64"), or
/// "unknown(0x..)".
std::string idx_type_name(uint8_t type_code);

/// An IDX array (the MNIST file format): type code 0x08 (uint8) .. 0x0E (float64), dims, data.
/// `data` holds numel() * idx_element_size(type_code) bytes in row-major order. One-byte types
/// are stored exactly as in the file; wider types are stored in HOST byte order (read_idx
/// decodes the file's big-endian elements, write_idx encodes them back), so
/// `reinterpret_cast<const float*>(a.data.data())` works for a float32 array.
struct IdxArray {
  /// IDX type code, one of kIdxUint8 .. kIdxFloat64.
  uint8_t type_code = kIdxUint8;
  /// Size of each dimension, outermost first (e.g. {60000, 28, 28}).
  std::vector<int64_t> dims;
  /// Element bytes, row-major; host byte order for multi-byte types.
  std::vector<uint8_t> data;
  /// Number of elements: the product of dims (1 for an array with no dims).
  int64_t numel() const;
};

/// Reads an IDX file, plain or gzip-compressed (detected by the magic bytes 1f 8b). Validates
/// the magic, the type code, the dims and the exact size: a truncated file or trailing bytes
/// are errors. Throws dynamoe::Error naming the path and the byte offset (in the decompressed
/// stream for gzip files).
IdxArray read_idx(const std::string& path);

/// Writes `a` as a plain (uncompressed) IDX file, atomically (temp file + rename). Throws
/// dynamoe::Error when dims and data disagree or the file cannot be written.
void write_idx(const std::string& path, const IdxArray& a);

/// N images, C x H x W uint8 each (channel-major), plus N uint8 labels.
struct ImageSet {
  /// Number of images.
  int64_t n = 0;
  /// Channels per image (1 for MNIST, 3 for CIFAR-10).
  int64_t channels = 1;
  /// Image height in pixels.
  int64_t height = 0;
  /// Image width in pixels.
  int64_t width = 0;
  /// n * channels * height * width bytes: image i starts at i * image_size().
  std::vector<uint8_t> pixels;
  /// n labels, one byte each.
  std::vector<uint8_t> labels;
  /// Bytes per image: channels * height * width.
  int64_t image_size() const { return channels * height * width; }
};

/// Reads an image IDX file (3-dim uint8: N x H x W) and a label IDX file (1-dim uint8: N) into
/// an ImageSet with channels = 1. Throws dynamoe::Error naming the file when a type or rank is
/// wrong or the two counts differ.
ImageSet read_idx_images(const std::string& images_path, const std::string& labels_path);

/// Paths of the four standard IDX files of a dataset folder.
struct IdxSplitPaths {
  /// <dir>/train-images-idx3-ubyte (or .gz).
  std::string train_images;
  /// <dir>/train-labels-idx1-ubyte (or .gz).
  std::string train_labels;
  /// <dir>/t10k-images-idx3-ubyte (or .gz).
  std::string test_images;
  /// <dir>/t10k-labels-idx1-ubyte (or .gz).
  std::string test_labels;
};

/// The four standard IDX file names inside `dataset_dir`. For each one, when the plain name
/// is absent but `<name>.gz` exists, the .gz path is returned; when neither exists the plain
/// path is returned (so that reading it reports the expected name).
IdxSplitPaths idx_paths(const std::string& dataset_dir);

}  // namespace dynamoe::data
