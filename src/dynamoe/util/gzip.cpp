#include "dynamoe/util/gzip.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "dynamoe/util/error.h"

namespace dynamoe {

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

size_t gunzip_size_hint(std::string_view in, size_t limit) {
  // The last 4 bytes hold the uncompressed size mod 2^32 of the last member: a size hint, but
  // one the file may lie about, so never more than the input could inflate to (deflate expands
  // at most ~1032:1).
  if (in.size() < 18) return 0;
  uint32_t isize = 0;
  for (int i = 3; i >= 0; --i) isize = (isize << 8) | static_cast<uint8_t>(in[in.size() - 4 + i]);
  return std::min<size_t>({isize, in.size() * 1032 + (1u << 16), limit});
}

std::string gunzip(std::string_view in, const std::string& what, size_t limit) {
  std::string out;
  out.reserve(gunzip_size_hint(in, limit));
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  DYNAMOE_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, what, ": cannot initialise zlib");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  size_t consumed = 0;  // compressed bytes handed to zlib so far
  char buf[1 << 16];
  for (;;) {
    if (zs.avail_in == 0 && consumed < in.size()) {
      const size_t chunk = std::min<size_t>(in.size() - consumed, 1u << 30);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + consumed));
      zs.avail_in = static_cast<uInt>(chunk);
      consumed += chunk;
    }
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (out.size() >= limit) {
      inflateEnd(&zs);
      out.resize(limit);
      return out;
    }
    const size_t offset = consumed - zs.avail_in;  // compressed bytes read so far
    if (rc == Z_STREAM_END) {
      if (offset == in.size()) break;
      // Another gzip member follows (as written by `cat a.gz b.gz`)?
      const std::string_view rest = in.substr(offset);
      if (!is_gzip(rest)) {
        inflateEnd(&zs);
        throw Error(str(what, ": ", in.size() - offset,
                        " trailing bytes after the gzip stream at compressed byte offset ",
                        offset));
      }
      inflateReset(&zs);
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && consumed == in.size()) {
      inflateEnd(&zs);
      throw Error(str(what, ": truncated gzip data (stream ends at compressed byte offset ",
                      in.size(), " before the end marker)"));
    }
    const std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
    inflateEnd(&zs);
    throw Error(str(what, ": corrupt gzip data near compressed byte offset ", offset,
                    ": ", msg));
  }
  inflateEnd(&zs);
  return out;
}

}  // namespace dynamoe
