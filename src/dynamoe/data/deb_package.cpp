#include "dynamoe/data/deb_package.h"

#include <chrono>
#include <cstring>
#include <filesystem>
#include <ostream>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/process.h"

namespace dynamoe::data {
namespace {

namespace fs = std::filesystem;

// apt's own error line ("E: Unable to locate package x") when there is one: apt prints harmless
// warnings ("W: Download is performed unsandboxed as root ...") before it.
std::string apt_error_reason(const std::string& err) {
  for (size_t pos = 0; pos < err.size();) {
    size_t nl = err.find('\n', pos);
    if (nl == std::string::npos) nl = err.size();
    const std::string line = err.substr(pos, nl - pos);
    if (line.rfind("E: ", 0) == 0) return line.substr(3);
    pos = nl + 1;
  }
  return process_error_reason(err);
}

}  // namespace

DebianPackage::DebianPackage(const std::string& name, std::ostream* log, const std::string& tag)
    : name_(name), tmp_dir_(make_temp_dir("dynamoe-deb-")) {
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string download_dir = (fs::path(tmp_dir_) / "deb").string();
    make_dirs(download_dir);
    log_line(log, str(tag, "downloading Debian package ", name, " (apt-get download)"));
    const ProcessResult get = run_process({"apt-get", "download", name}, {}, tmp_dir_, download_dir);
    if (get.spawn_errno != 0)
      throw Error(str("cannot run 'apt-get' (", std::strerror(get.spawn_errno),
                      "); dynamoe needs Debian's apt-get to download package '", name, "'"));
    if (get.exit_code != 0)
      throw Error(str("cannot download Debian package '", name, "' (", exit_description("apt-get download", get), ": ",
                      apt_error_reason(get.err), "); run apt-get update (as root) if the package lists are missing ",
                      "or out of date, and check that the Debian mirror can be reached"));
    fs::path deb;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(download_dir, ec))
      if (entry.path().extension() == ".deb") deb = entry.path();
    DYNAMOE_CHECK(!deb.empty(), "apt-get download ", name, " succeeded but wrote no .deb file (output: '",
                  last_line(get.out), "')");
    deb_file_ = deb.filename().string();

    const ProcessResult field = run_process({"dpkg-deb", "-f", deb.string(), "Version"}, {}, tmp_dir_);
    if (field.spawn_errno != 0)
      throw Error(str("cannot run 'dpkg-deb' (", std::strerror(field.spawn_errno), ") to read ", deb_file_));
    version_ = first_line(field.out);
    if (field.exit_code != 0 || version_.empty())
      throw Error(str("cannot read the version of Debian package file '", deb_file_, "' (",
                      exit_description("dpkg-deb -f", field), ": ", process_error_reason(field.err), ")"));
    log_line(log, str(tag, "downloaded ", deb_file_, " (", megabytes(fs::file_size(deb, ec)), ", version ", version_,
                      ") in ", seconds_since(t0)));

    const auto t1 = std::chrono::steady_clock::now();
    root_ = (fs::path(tmp_dir_) / "root").string();
    make_dirs(root_);
    const ProcessResult unpack = run_process({"dpkg-deb", "-x", deb.string(), root_}, {}, tmp_dir_);
    if (unpack.exit_code != 0)
      throw Error(str("cannot unpack Debian package file '", deb_file_, "' (", exit_description("dpkg-deb -x", unpack),
                      ": ", process_error_reason(unpack.err), ")"));
    fs::remove(deb, ec);  // the unpacked tree is all we need
    log_line(log, str(tag, "unpacked ", deb_file_, " in ", seconds_since(t1)));
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);
    throw;
  }
}

DebianPackage::~DebianPackage() {
  std::error_code ec;
  fs::remove_all(tmp_dir_, ec);
}

}  // namespace dynamoe::data
