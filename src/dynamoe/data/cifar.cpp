#include "dynamoe/data/cifar.h"

#include <cstring>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::data {

ImageSet read_cifar10(const std::vector<std::string>& batch_files) {
  DYNAMOE_CHECK(!batch_files.empty(), "read_cifar10: no CIFAR-10 batch files given");
  ImageSet s;
  s.channels = 3;
  s.height = 32;
  s.width = 32;
  for (const std::string& path : batch_files) {
    const std::string bytes = read_file(path);
    const auto size = static_cast<int64_t>(bytes.size());
    DYNAMOE_CHECK(size > 0, "CIFAR-10 file '", path, "' is empty (expected records of ",
                  kCifarRecordBytes, " bytes)");
    const int64_t records = size / kCifarRecordBytes;
    DYNAMOE_CHECK(size % kCifarRecordBytes == 0, "CIFAR-10 file '", path, "': size ", size,
                  " is not a multiple of ", kCifarRecordBytes, " (1 label + ", kCifarImageBytes,
                  " pixel bytes): record ", records, " at byte offset ", records * kCifarRecordBytes,
                  " is truncated (", size % kCifarRecordBytes, " of ", kCifarRecordBytes, " bytes)");
    const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
    for (int64_t r = 0; r < records; ++r) {
      const uint8_t label = b[r * kCifarRecordBytes];
      DYNAMOE_CHECK(label < kCifarClasses, "CIFAR-10 file '", path, "': record ", r,
                    " at byte offset ", r * kCifarRecordBytes, " has label ",
                    static_cast<int>(label), ", expected 0..", kCifarClasses - 1);
    }
    const size_t old_pixels = s.pixels.size();
    s.pixels.resize(old_pixels + static_cast<size_t>(records * kCifarImageBytes));
    s.labels.reserve(s.labels.size() + static_cast<size_t>(records));
    for (int64_t r = 0; r < records; ++r) {
      const uint8_t* rec = b + r * kCifarRecordBytes;
      s.labels.push_back(rec[0]);
      std::memcpy(s.pixels.data() + old_pixels + r * kCifarImageBytes, rec + 1, kCifarImageBytes);
    }
    s.n += records;
  }
  return s;
}

}  // namespace dynamoe::data
