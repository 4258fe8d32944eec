#include "dynamoe/data/npm_pack.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string_view>
#include <utility>
#include <vector>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/process.h"

namespace dynamoe::data {
namespace {

namespace fs = std::filesystem;

// npm quiet, its cache in our temp dir, and a short retry back-off unless the user set one.
std::vector<std::pair<std::string, std::string>> npm_env(const std::string& tmp) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"npm_config_loglevel", "error"},
      {"npm_config_fund", "false"},
      {"npm_config_audit", "false"},
      {"npm_config_update_notifier", "false"},
      {"npm_config_cache", (fs::path(tmp) / "npm-cache").string()},
  };
  if (!std::getenv("npm_config_fetch_retry_mintimeout")) env.emplace_back("npm_config_fetch_retry_mintimeout", "1000");
  if (!std::getenv("npm_config_fetch_retry_factor")) env.emplace_back("npm_config_fetch_retry_factor", "2");
  if (!std::getenv("npm_config_fetch_retry_maxtimeout")) env.emplace_back("npm_config_fetch_retry_maxtimeout", "10000");
  return env;
}

}  // namespace

NpmPackage::NpmPackage(const std::string& spec, std::ostream* log, const std::string& tag)
    : spec_(spec), tmp_dir_(make_temp_dir("dynamoe-npm-")) {
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const auto env = npm_env(tmp_dir_);
    const std::string no_npm = str("; dynamoe needs Node.js's npm on PATH to download npm package '", spec, "'");

    const ProcessResult cfg = run_process({"npm", "config", "get", "registry"}, env, tmp_dir_);
    if (cfg.spawn_errno != 0) throw Error(str("cannot run 'npm' (", std::strerror(cfg.spawn_errno), ")", no_npm));
    std::string registry = cfg.exit_code == 0 ? first_line(cfg.out) : "";
    if (registry.empty()) registry = "the configured npm registry";

    log_line(log, str(tag, "downloading npm package ", spec, " from ", registry, " (npm pack)"));
    const ProcessResult pack = run_process({"npm", "pack", spec, "--pack-destination", tmp_dir_}, env, tmp_dir_);
    if (pack.spawn_errno != 0) throw Error(str("cannot run 'npm' (", std::strerror(pack.spawn_errno), ")", no_npm));
    if (pack.exit_code != 0)
      throw Error(str("cannot download npm package '", spec, "' (", exit_description("npm pack", pack), ": ",
                      process_error_reason(pack.err), "); dynamoe needs access to the npm registry"));
    std::error_code ec;
    fs::path tarball = fs::path(tmp_dir_) / last_line(pack.out);
    if (last_line(pack.out).empty() || !fs::is_regular_file(tarball, ec)) {
      tarball.clear();
      for (const auto& entry : fs::directory_iterator(tmp_dir_, ec))
        if (entry.path().extension() == ".tgz") tarball = entry.path();
      DYNAMOE_CHECK(!tarball.empty(), "npm pack ", spec, " succeeded but wrote no .tgz file into '", tmp_dir_,
                    "' (stdout: '", last_line(pack.out), "')");
    }
    log_line(log, str(tag, "downloaded ", tarball.filename().string(), " (", megabytes(fs::file_size(tarball, ec)),
                      ") in ", seconds_since(t0)));

    const std::string unpack_dir = (fs::path(tmp_dir_) / "unpack").string();
    make_dirs(unpack_dir);
    const ProcessResult untar = run_process({"tar", "-xzf", tarball.string(), "-C", unpack_dir}, {}, tmp_dir_);
    if (untar.spawn_errno != 0)
      throw Error(str("cannot run 'tar' (", std::strerror(untar.spawn_errno), ") to unpack ",
                      tarball.filename().string()));
    if (untar.exit_code != 0)
      throw Error(str("cannot unpack npm package '", spec, "' (", exit_description("tar", untar), ": ",
                      process_error_reason(untar.err), ")"));
    package_dir_ = (fs::path(unpack_dir) / "package").string();
    DYNAMOE_CHECK(fs::is_directory(package_dir_, ec), "unexpected layout of npm package '", spec,
                  "': the tarball has no package/ folder");
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);
    throw;
  }
}

NpmPackage::~NpmPackage() {
  std::error_code ec;
  fs::remove_all(tmp_dir_, ec);
}

}  // namespace dynamoe::data
