#pragma once
// Crash-safe file output: write to a temporary file beside the target, fsync, rename, fsync
// the directory. A reader never sees a half-written file.
#include <string>
#include <string_view>

namespace dynamoe {

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + directory fsync).
/// Creates missing parent directories. Throws dynamoe::Error naming the path on failure.
void write_file_atomic(const std::string& path, std::string_view bytes);

/// Reads a whole file. Throws dynamoe::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

/// fsyncs a directory so that a rename inside it is durable.
void fsync_dir(const std::string& dir);

/// Creates `dir` and its parents (like mkdir -p). Throws dynamoe::Error on failure.
void make_dirs(const std::string& dir);

}  // namespace dynamoe
