#include "dynamoe/report/chart_library.h"

#include <filesystem>
#include <ostream>

#include "dynamoe/data/npm_pack.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::report {
namespace fs = std::filesystem;

ChartLibrary chart_library(const std::string& cache_dir, std::ostream* log) {
  ChartLibrary lib;
  lib.dir = cache_dir;
  lib.vega = (fs::path(cache_dir) / "vega.min.js").string();
  lib.vega_lite = (fs::path(cache_dir) / "vega-lite.min.js").string();
  lib.vega_embed = (fs::path(cache_dir) / "vega-embed.min.js").string();
  const std::string versions = str(kVegaPackage, " ", kVegaLitePackage, " ", kVegaEmbedPackage, "\n");
  const std::string stamp = (fs::path(cache_dir) / "VERSIONS").string();
  std::error_code ec;
  const bool cached = fs::exists(lib.vega, ec) && fs::exists(lib.vega_lite, ec) && fs::exists(lib.vega_embed, ec) &&
                      fs::exists(stamp, ec) && read_file(stamp) == versions;
  if (cached) return lib;
  make_dirs(cache_dir);
  const std::pair<const char*, std::string> files[] = {{kVegaPackage, "vega.min.js"},
                                                       {kVegaLitePackage, "vega-lite.min.js"},
                                                       {kVegaEmbedPackage, "vega-embed.min.js"}};
  for (const auto& [spec, file] : files) {
    data::NpmPackage pkg(spec, log, "report: ");
    const fs::path src = fs::path(pkg.dir()) / "build" / file;
    DYNAMOE_CHECK(fs::exists(src, ec), "report: npm package ", spec, " has no build/", file);
    write_file_atomic((fs::path(cache_dir) / file).string(), read_file(src.string()));
  }
  write_file_atomic(stamp, versions);
  if (log) *log << "report: chart library cached in " << cache_dir << std::endl;
  return lib;
}

}  // namespace dynamoe::report
