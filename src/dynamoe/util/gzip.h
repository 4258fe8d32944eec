#pragma once
// gzip decompression in memory (zlib), for IDX files and gzipped documents in Debian packages.
//
// Usage:
//   std::string bytes = dynamoe::read_file(path);
//   if (dynamoe::is_gzip(bytes)) bytes = dynamoe::gunzip(bytes, "IDX file '" + path + "'");
#include <string>
#include <string_view>

namespace dynamoe {

/// True when `bytes` starts with the gzip magic 1f 8b.
bool is_gzip(std::string_view bytes);

/// Decompresses gzip data (one or more concatenated members, as `cat a.gz b.gz` writes).
/// Throws a one-line dynamoe::Error starting with `what` (e.g. "IDX file 'x.gz'") and giving the
/// compressed byte offset for truncated or corrupt data and for trailing bytes.
/// With `limit`, decompression stops once `limit` bytes are out and those are returned (a
/// result of exactly `limit` bytes may have been cut): callers that know the size to expect
/// never inflate a decompression bomb.
std::string gunzip(std::string_view in, const std::string& what, size_t limit = static_cast<size_t>(-1));

/// The bytes gunzip reserves up front: the size the gzip trailer states, but at most `limit` and
/// at most what `in` could inflate to (a lying trailer costs no memory).
size_t gunzip_size_hint(std::string_view in, size_t limit);

}  // namespace dynamoe
