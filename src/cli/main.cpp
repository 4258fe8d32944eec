// dynamoe: the command-line tool. `dynamoe --help` lists the commands.
#include <c10/util/Exception.h>

#include <unistd.h>

#include <iostream>

#include "commands.h"
#include "dynamoe/dist/launch_env.h"

namespace {

const char* kVersion = "0.1.0";

/// Clears a live progress line on a terminal so that an error reads as one line.
const char* clear_line() { return isatty(2) ? "\r\033[K" : ""; }

/// Prints "dynamoe: [rank R: ]<message>" in one write, so that the lines of several processes
/// sharing a terminal do not interleave.
void report(const std::string& message) {
  std::cerr << (clear_line() + std::string("dynamoe: ") + dynamoe::dist::rank_prefix() + message + "\n") << std::flush;
}

std::vector<dynamoe::cli::Command> commands() {
  using namespace dynamoe::cli;
  return {train_command(), eval_command(), data_command(), config_command(), moe_apply_command(), gradnoise_command(), bench_command(),
          tokenize_command(), generate_command(), sweep_command(), report_command(), results_command(), mc_command(), launch_command()};
}

void print_main_help() {
  std::cout << "usage: dynamoe <command> [options]\n\n"
               "dynamoe: Mixture-of-Experts training with dynamic routing, on LibTorch.\n\ncommands:\n";
  for (const auto& c : commands()) {
    std::string name = "  " + c.spec.name;
    name.resize(12, ' ');
    std::cout << name << c.spec.summary << "\n";
  }
  std::cout << "\n`dynamoe <command> --help` shows a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    print_main_help();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "dynamoe " << kVersion << "\n";
    return 0;
  }
  try {
    for (const auto& c : commands()) {
      if (c.spec.name != args[0]) continue;
      dynamoe::cli::ParsedArgs parsed = dynamoe::cli::parse_args(c.spec, {args.begin() + 1, args.end()});
      if (parsed.help) {
        std::cout << dynamoe::cli::help_text(c.spec);
        return 0;
      }
      return c.run(parsed);
    }
    std::string valid;
    for (const auto& c : commands()) valid += (valid.empty() ? "" : ", ") + c.spec.name;
    std::cerr << "dynamoe: unknown command '" << args[0] << "' (commands: " << valid << ")\n";
    return 2;
  } catch (const dynamoe::ConfigError& e) {
    report(std::string("error: ") + e.what());
    return 2;
  } catch (const dynamoe::Error& e) {
    report(std::string("error: ") + e.what());
    return 1;
  } catch (const c10::Error& e) {
    report(std::string("error (LibTorch): ") + e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    report(std::string("error: ") + e.what());
    return 1;
  }
}
