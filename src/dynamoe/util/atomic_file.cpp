#include "dynamoe/util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dynamoe/util/error.h"

namespace dynamoe {
namespace fs = std::filesystem;

void make_dirs(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  DYNAMOE_CHECK(!ec, "cannot create directory '", dir, "': ", ec.message());
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems refuse directory fds
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  const fs::path target(path);
  const std::string dir = target.parent_path().string();
  make_dirs(dir);
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DYNAMOE_CHECK(fd >= 0, "cannot write '", tmp, "': ", std::strerror(errno));
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(str("cannot write '", path, "': ", std::strerror(err)));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(str("cannot flush '", path, "': ", std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(str("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err)));
  }
  fsync_dir(dir);
}

std::string read_file(const std::string& path) {
  // Only regular files (after symlinks): a directory would read as empty text, and a device
  // such as /dev/zero would never end.
  struct stat st {};
  DYNAMOE_CHECK(::stat(path.c_str(), &st) == 0, "cannot read '", path, "': ", std::strerror(errno));
  DYNAMOE_CHECK(S_ISREG(st.st_mode), "cannot read '", path, "': ",
                S_ISDIR(st.st_mode) ? "it is a directory" : "it is not a regular file");
  std::ifstream in(path, std::ios::binary);
  DYNAMOE_CHECK(in.good(), "cannot read '", path, "': ", std::strerror(errno));
  // One buffer of the file's size (a stringstream would hold the bytes twice).
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  DYNAMOE_CHECK(!in.bad() && in.gcount() == static_cast<std::streamsize>(bytes.size()), "error while reading '", path,
                "' (", in.gcount(), " of ", bytes.size(), " bytes)");
  return bytes;
}

}  // namespace dynamoe
