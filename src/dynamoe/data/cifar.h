#pragma once
// The standard CIFAR-10 binary format (data_batch_1.bin .. data_batch_5.bin, test_batch.bin):
// a file is a sequence of 3073-byte records, each 1 label byte (0..9) followed by 3072 pixel
// bytes: the 1024 red, then 1024 green, then 1024 blue values of a 32 x 32 image, row-major.
//
// Usage:
//   dynamoe::data::ImageSet train = dynamoe::data::read_cifar10(
//       {"cifar-10-batches-bin/data_batch_1.bin", "cifar-10-batches-bin/data_batch_2.bin"});
#include <cstdint>
#include <string>
#include <vector>

#include "dynamoe/data/idx.h"

namespace dynamoe::data {

/// Pixel bytes of one CIFAR-10 image: 3 channels x 32 x 32.
inline constexpr int64_t kCifarImageBytes = 3 * 32 * 32;
/// Bytes of one CIFAR-10 record: 1 label byte + kCifarImageBytes.
inline constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;
/// Number of CIFAR-10 classes; labels are 0 .. kCifarClasses - 1.
inline constexpr int kCifarClasses = 10;

/// Reads CIFAR-10 binary batch files, in the given order, into one ImageSet with channels 3,
/// height 32, width 32 (pixels channel-major, exactly as in the files). Throws dynamoe::Error
/// naming the file when the list is empty, a file is empty, its size is not a multiple of 3073
/// (a truncated record, with its index and byte offset) or a label is not in 0..9 (with the
/// record index and byte offset).
ImageSet read_cifar10(const std::vector<std::string>& batch_files);

}  // namespace dynamoe::data
