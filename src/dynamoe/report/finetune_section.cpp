#include "dynamoe/report/finetune_section.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "dynamoe/report/stats.h"
#include "dynamoe/util/error.h"

namespace dynamoe::report {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct Config {
  std::string name;
  std::vector<const RunData*> runs;  ///< finished fine-tuning runs, seed order
};

std::string ms(const std::vector<double>& v, const char* f, double scale = 1) {
  if (v.empty()) return "-";
  std::vector<double> s;
  for (double x : v) s.push_back(scale * x);
  return fmt(f, mean(s)) + (s.size() > 1 ? " ± " + fmt(f, stdev(s)) : "");
}

/// The finished fine-tuning runs by configuration, in sweep order; `any` is the first of them.
void group_configs(const SweepData& data, std::vector<Config>& configs, const RunData*& any) {
  std::map<std::string, size_t> index;
  for (const RunData& r : data.runs) {
    if (!r.summary || !r.summary->contains("base_domains")) continue;
    if (!any) any = &r;
    const std::string name = configuration_name(data, r);
    auto it = index.find(name);
    if (it == index.end()) {
      it = index.emplace(name, configs.size()).first;
      configs.push_back({name, {}});
    }
    configs[it->second].runs.push_back(&r);
  }
}

/// The "Per domain" section: perplexity and accuracy per domain, the base model (from `any`) first.
std::string domain_table(const std::vector<Config>& configs, const RunData* any,
                         const std::vector<std::string>& domains) {
  std::string md = "## Per domain\n\nVal perplexity and multiple-choice accuracy (%) per domain, mean ± sd over seeds. "
                   "The first row is the frozen base model before fine-tuning (the same in every run).\n\n| configuration |";
  std::string rule = "|---|";
  for (const auto& d : domains) {
    md += " " + d + " perplexity | " + d + " accuracy |";
    rule += "---|---|";
  }
  md += " trainable parameters |\n" + rule + "---|\n| base model |";
  for (const auto& d : domains) {
    const json& b = (*any->summary)["base_domains"][d];
    md += " " + fmt("%.3f", b.value("val_perplexity", 0.0)) + " | " + fmt("%.2f", 100 * b.value("mc_accuracy", 0.0)) + " |";
  }
  md += " 0 |\n";
  for (const Config& c : configs) {
    md += "| " + c.name + " |";
    for (const auto& d : domains) {
      std::vector<double> ppl, acc;
      for (const RunData* r : c.runs) {
        const json& j = (*r->summary)["domains"][d];
        ppl.push_back(j.value("val_perplexity", 0.0));
        acc.push_back(j.value("mc_accuracy", 0.0));
      }
      md += " " + ms(ppl, "%.3f") + " | " + ms(acc, "%.2f", 100) + " |";
    }
    md += " " + std::to_string(c.runs[0]->summary->value("parameters", int64_t{0})) + " |\n";
  }
  return md;
}

/// The all-experts fraction at each evaluation (metrics.jsonl), mean over projections and seeds ("" when none).
std::string all_experts_by_step(const Config& c) {
  std::string md;
  std::map<int64_t, std::vector<double>> by_step;
  for (const RunData* r : c.runs) {
    std::ifstream in(fs::path(r->dir) / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      json row;
      try {
        row = json::parse(line);
      } catch (const std::exception&) {
        continue;
      }
      if (row.value("split", "") == "val" && row.contains("routing"))
        by_step[row.value("step", int64_t{0})].push_back(row["routing"].value("all_experts_fraction", 0.0));
    }
  }
  if (!by_step.empty()) {
    md += "Tokens sent to every expert, mean over projections and seeds, by training step:";
    for (const auto& [step, v] : by_step) md += " " + std::to_string(step) + ": " + fmt("%.3f", mean(v)) + ";";
    md.back() = '.';
    md += "\n\n";
  }
  return md;
}

/// The routing of one configuration: the all-experts fraction over training, then per projection its numbers.
std::string config_routing(const Config& c, const std::vector<std::string>& domains) {
  const json& layers0 = (*c.runs[0]->summary)["routing"]["layers"];
  std::string md;
  md += "### " + c.name + "\n\n";
  md += all_experts_by_step(c);
  md += "| projection | all experts | active/token | routing MI |";
  std::string r2 = "|---|---|---|---|";
  for (const auto& d : domains) {
    md += " " + d + ": top expert (share) |";
    r2 += "---|";
  }
  md += "\n" + r2 + "\n";
  std::vector<double> all_mean, mi_mean;
  for (size_t l = 0; l < layers0.size(); ++l) {
    std::vector<double> all, act, mi;
    for (const RunData* r : c.runs) {
      const json& L = (*r->summary)["routing"]["layers"][l];
      all.push_back(L.value("all_experts_fraction", 0.0));
      act.push_back(L.value("active_mean", 0.0));
      mi.push_back(L.value("routing_mi", 0.0));
    }
    md += "| " + layers0[l].value("name", "") + " | " + ms(all, "%.3f") + " | " + ms(act, "%.2f") + " | " + ms(mi, "%.3f") + " |";
    for (const auto& d : domains) {
      const json& shares = layers0[l]["shares"][d];
      size_t best = 0;
      for (size_t e = 0; e < shares.size(); ++e)
        if (shares[e].get<double>() > shares[best].get<double>()) best = e;
      md += shares.empty() ? " - |" : " e" + std::to_string(best) + " (" + fmt("%.2f", shares[best].get<double>()) + ") |";
    }
    md += "\n";
  }
  md += "\n";
  return md;
}

}  // namespace

std::string finetune_section(const SweepData& data) {
  std::vector<Config> configs;
  const RunData* any = nullptr;
  group_configs(data, configs, any);
  if (!any) return "";
  std::vector<std::string> domains;
  for (const auto& [d, v] : (*any->summary)["base_domains"].items()) domains.push_back(d);

  std::string md = domain_table(configs, any, domains);

  // Routing of the mixtures.
  bool any_routing = false;
  for (const Config& c : configs) any_routing = any_routing || c.runs[0]->summary->contains("routing");
  if (!any_routing) return md + "\n";
  md += "\n## Routing\n\nPer adapted projection, mean ± sd over seeds on the val tokens of all domains: the fraction "
        "of tokens that activated every expert (DynMoLE's high-entropy broadcast), the mean active experts per token, "
        "and the mutual information between a token's domain and the experts it was sent to, divided by log(domains) "
        "(0: every domain is routed alike; 1: the experts separate the domains). Then, for the first seed, each "
        "domain's most used expert and the share of that domain's assignments it received (uniform is 1/E).\n\n";
  for (const Config& c : configs) {
    if (!c.runs[0]->summary->contains("routing")) continue;
    md += config_routing(c, domains);
  }
  return md;
}

}  // namespace dynamoe::report
