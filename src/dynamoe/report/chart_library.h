#pragma once
// The chart library inlined into report.html (so it opens without a network): Vega, Vega-Lite
// and vega-embed, fetched once with `npm pack` (data/npm_pack.h) and cached in a folder.
#include <iosfwd>
#include <string>

namespace dynamoe::report {

/// The pinned npm packages, "name@version".
inline constexpr const char* kVegaPackage = "vega@5.30.0";
inline constexpr const char* kVegaLitePackage = "vega-lite@5.21.0";
inline constexpr const char* kVegaEmbedPackage = "vega-embed@6.26.0";

/// Paths of the three minified UMD builds.
struct ChartLibrary {
  std::string dir;                            ///< the cache folder
  std::string vega, vega_lite, vega_embed;    ///< files in it
};

/// The cached library in `cache_dir` (e.g. data/vega), fetched with npm when a file is missing
/// or was fetched for other versions. Progress lines go to `log`. Throws dynamoe::Error (naming
/// npm's reason) when it cannot be fetched.
ChartLibrary chart_library(const std::string& cache_dir, std::ostream* log);

}  // namespace dynamoe::report
