#pragma once
// One Debian package downloaded with `apt-get download` and unpacked with `dpkg-deb -x`, in a
// temporary folder that is removed when the object goes away. Needs apt-get and dpkg-deb (any
// Debian system) and the package lists (`apt-get update`); no root rights are needed.
//
// Usage:
//   dynamoe::data::DebianPackage pkg("jargon-text", &std::cerr, "fetch jargon: ");
//   std::string f = pkg.root() + "/usr/share/doc/jargon-text/jargon.txt.gz";
//   std::string v = pkg.version();  // "4.4.7-4.1"
#include <iosfwd>
#include <string>

namespace dynamoe::data {

/// A downloaded and unpacked Debian package; its files live as long as the object.
class DebianPackage {
 public:
  /// Runs `apt-get download <name>` in a fresh temp dir ($TMPDIR or /tmp, "dynamoe-deb-XXXXXX"),
  /// reads the version with `dpkg-deb -f <deb> Version` and unpacks the package's files with
  /// `dpkg-deb -x`. Progress lines, each prefixed by `tag`, go to `log` (nullptr: silent): which
  /// package, the .deb's size and version, the times. Throws a one-line dynamoe::Error when
  /// apt-get or dpkg-deb cannot be run, the package is unknown or cannot be downloaded (with the
  /// hint to run apt-get update) or cannot be unpacked; the temp dir is removed in every case.
  explicit DebianPackage(const std::string& name, std::ostream* log = nullptr, const std::string& tag = "");
  ~DebianPackage();
  DebianPackage(const DebianPackage&) = delete;
  DebianPackage& operator=(const DebianPackage&) = delete;

  /// The unpacked file tree: root() + "/usr/share/doc/..." as installed.
  const std::string& root() const { return root_; }
  /// The package name it was fetched with.
  const std::string& name() const { return name_; }
  /// The exact version downloaded (the .deb's Version field), e.g. "3.11.2-6+deb12u9".
  const std::string& version() const { return version_; }
  /// The .deb file's name, e.g. "jargon-text_4.4.7-4.1_all.deb".
  const std::string& deb_file() const { return deb_file_; }

 private:
  std::string name_, tmp_dir_, root_, version_, deb_file_;
};

}  // namespace dynamoe::data
