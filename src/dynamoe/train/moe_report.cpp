#include "dynamoe/train/moe_report.h"

#include <cstdio>

namespace dynamoe::train {

void accumulate(std::vector<moe::LayerStatsAccumulator>& acc, const std::vector<moe::LayerStats>& stats) {
  if (acc.size() < stats.size()) acc.resize(stats.size());
  for (size_t l = 0; l < stats.size(); ++l) acc[l].add(stats[l]);
}

void add_moe_eval(const std::vector<moe::LayerStatsAccumulator>& acc, const std::string& what, nlohmann::json& row,
                  std::string& line) {
  if (acc.empty()) return;
  row["moe"] = moe_json(acc);
  row["active_experts"] = mean_active(acc);
  line += "  active experts/token per " + what + ":";
  char buf[32];
  for (const auto& a : acc) {
    std::snprintf(buf, sizeof(buf), " %.2f", a.active_mean());
    line += buf;
  }
}

void add_moe_summary(const std::vector<moe::LayerStatsAccumulator>& acc, const std::string& title, nlohmann::json& summary,
                     std::ostream& out) {
  if (acc.empty()) return;
  summary["moe"] = moe_json(acc);
  summary["active_experts"] = mean_active(acc);
  out << title << ":\n" << moe_table(acc);
}

nlohmann::json moe_json(const std::vector<moe::LayerStatsAccumulator>& acc) {
  nlohmann::json layers = nlohmann::json::array();
  for (size_t l = 0; l < acc.size(); ++l) {
    const auto& a = acc[l];
    nlohmann::json losses = nlohmann::json::object();
    for (const auto& [k, v] : a.loss_sums) losses[k] = a.batches ? v / a.batches : 0;
    nlohmann::json j = {{"layer", l},
                        {"experts", a.n_experts},
                        {"active_mean", a.active_mean()},
                        {"active_hist", a.active_hist},
                        {"load", a.load()},
                        {"load_cv", a.load_cv()},
                        {"dropped", a.dropped},
                        {"drop_rate", a.batches ? a.drop_rate_sum / a.batches : 0},
                        {"entropy", a.tokens ? a.entropy_sum / a.tokens : 0},
                        {"flops_per_token", a.flops_per_token()},
                        {"losses", losses}};
    if (a.has_tsallis) j["tsallis_h_norm"] = a.tokens ? a.tsallis_sum / a.tokens : 0;
    if (!a.router_state.empty()) j["router_state"] = a.router_state;
    layers.push_back(j);
  }
  return layers;
}

double mean_active(const std::vector<moe::LayerStatsAccumulator>& acc) {
  if (acc.empty()) return 0;
  double s = 0;
  for (const auto& a : acc) s += a.active_mean();
  return s / static_cast<double>(acc.size());
}

std::string moe_table(const std::vector<moe::LayerStatsAccumulator>& acc) {
  std::string out = "layer  experts  active/token  load per expert (%)                     load CV  dropped\n";
  char buf[256];
  for (size_t l = 0; l < acc.size(); ++l) {
    const auto& a = acc[l];
    std::string load;
    for (double f : a.load()) {
      std::snprintf(buf, sizeof(buf), "%s%.0f", load.empty() ? "" : " ", 100.0 * f);
      load += buf;
    }
    std::snprintf(buf, sizeof(buf), "%5zu  %7lld  %12.2f  %-38s  %7.2f  %7lld\n", l, static_cast<long long>(a.n_experts),
                  a.active_mean(), load.c_str(), a.load_cv(), static_cast<long long>(a.dropped));
    out += buf;
  }
  return out;
}

}  // namespace dynamoe::train
