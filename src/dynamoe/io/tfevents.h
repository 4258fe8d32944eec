#pragma once
// TensorBoard event files, written by dynamoe itself: TFRecord framing (uint64 length, masked
// CRC32C of the length, the data, masked CRC32C of the data) around serialized tensorflow.Event
// protos (wall_time = 1, step = 2, file_version = 3, summary = 5; Summary.value = 1 with tag = 1,
// simple_value = 2, histo = 5; HistogramProto min/max/num/sum/sum_squares = 1..5, bucket_limit
// = 6 and bucket = 7 packed). No protobuf library: the few fields are encoded here.
//
//   EventFile f("runs/x/events.out.tfevents.dynamoe", /*keep_to_step=*/-1);   // new file
//   f.write(scalar_event(now, 100, {{"train/loss", 0.42f}}));
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace dynamoe::io {

/// CRC-32C (Castagnoli) of n bytes.
uint32_t crc32c(const void* data, size_t n);
/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);
/// One TFRecord around `data`.
std::string tfrecord(const std::string& data);

/// The first event of a file: file_version "brain.Event:2".
std::string file_version_event(double wall_time);
/// An event with one scalar (simple_value) per (tag, value).
std::string scalar_event(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& scalars);
/// A histogram: bucket i holds `counts[i]` values in (limits[i-1], limits[i]].
struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> limits, counts;
};
/// An event with one histogram under `tag`.
std::string histogram_event(double wall_time, int64_t step, const std::string& tag, const Histogram& h);

/// The records of a TFRecord file's bytes with each Event's step (0 when absent): (step, the
/// whole framed record). Throws dynamoe::Error naming `where` and the byte offset on a bad
/// length, CRC, truncation or malformed Event.
std::vector<std::pair<int64_t, std::string>> read_event_records(const std::string& bytes, const std::string& where);

/// An event file open for appending. With keep_to_step >= 0 an existing file is first rewritten
/// (atomically) with only its file_version event and the events of steps <= keep_to_step, as a
/// resumed run's metrics are; otherwise it is started afresh. Writes are flushed at once.
class EventFile {
 public:
  EventFile(const std::string& path, int64_t keep_to_step);
  ~EventFile();
  EventFile(const EventFile&) = delete;
  EventFile& operator=(const EventFile&) = delete;
  /// Appends serialized Event protos, each framed as a TFRecord; throws naming the file on failure.
  void write(const std::vector<std::string>& events);

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace dynamoe::io
