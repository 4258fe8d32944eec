// Every command's --help: exits 0, its usage lines name each option it lists (or say [options]),
// and no option's help repeats "(repeatable)".
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>

#include "test_util.h"

namespace {

using dynamoe::testutil::cli;
using dynamoe::testutil::run_command;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The commands `dynamoe --help` lists.
std::vector<std::string> commands() {
  auto r = run_command(cli() + " --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> names;
  bool in_list = false;
  for (const std::string& line : lines_of(r.output)) {
    if (line == "commands:") { in_list = true; continue; }
    if (in_list && line.empty()) break;
    std::smatch m;
    if (in_list && std::regex_search(line, m, std::regex("^  ([a-z-]+) "))) names.push_back(m[1]);
  }
  return names;
}

TEST(CliHelp, UsageNamesEveryListedOption) {
  const std::vector<std::string> names = commands();
  ASSERT_GE(names.size(), 14u);
  for (const std::string& name : names) {
    auto r = run_command(cli() + " " + name + " --help");
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.output;
    std::string usage;  // the usage line and its continuation lines
    std::set<std::string> options;
    bool in_usage = false, in_options = false;
    for (const std::string& line : lines_of(r.output)) {
      if (line.rfind("usage: ", 0) == 0) { in_usage = true; usage += line; continue; }
      if (in_usage && line.empty()) in_usage = false;
      if (in_usage) usage += line;
      if (line == "options:") { in_options = true; continue; }
      if (in_options && line.empty()) in_options = false;
      std::smatch m;
      if (in_options && std::regex_search(line, m, std::regex("^  --([a-z0-9-]+)"))) options.insert(m[1]);
      EXPECT_EQ(line.find("(repeatable) (repeatable)"), std::string::npos) << name << ": " << line;
    }
    ASSERT_FALSE(usage.empty()) << name << ": no usage line in\n" << r.output;
    if (usage.find("[options]") != std::string::npos) continue;
    for (const std::string& o : options) {
      if (o == "help") continue;
      EXPECT_NE(usage.find("--" + o), std::string::npos) << name << ": usage does not name --" << o << ": " << usage;
    }
  }
}

}  // namespace
