#include "dynamoe/sweep/sweep_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "dynamoe/io/checkpoint.h"
#include "dynamoe/moe/routing.h"
#include "dynamoe/models/moe_options.h"
#include "dynamoe/sweep/model_info.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

extern char** environ;

namespace dynamoe::sweep {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ojson = nlohmann::ordered_json;

namespace {

volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

/// Installs SIGINT / SIGTERM / SIGHUP handlers for its lifetime (no SA_RESTART: poll() returns).
class SignalScope {
 public:
  SignalScope() {
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &old_[i]);
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe_);
  }
  ~SignalScope() {
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &old_[i], nullptr);
    sigaction(SIGPIPE, &old_pipe_, nullptr);
  }

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3] {}, old_pipe_ {};
};

/// An exclusive lock on <dir>/.sweep.lock, released when the process ends.
class FolderLock {
 public:
  explicit FolderLock(const std::string& dir) {
    const std::string path = (fs::path(dir) / ".sweep.lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    DYNAMOE_CHECK(fd_ >= 0, "sweep: cannot open ", path, ": ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {0};
      const ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
      ::close(fd_);
      throw Error(str("sweep: folder '", dir, "' is in use by another dynamoe sweep",
                      n > 0 ? str(" (pid ", std::string(buf, static_cast<size_t>(n)), ")") : std::string(),
                      "; wait for it or stop it first"));
    }
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
      // the pid is only informative
    }
  }
  ~FolderLock() { ::close(fd_); }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

std::string clock_text(double seconds) {
  const int s = static_cast<int>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%d:%02d", s / 60, s % 60);
  }
  return buf;
}

std::string now_text() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

std::string self_exe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  DYNAMOE_CHECK(!ec, "sweep: cannot read /proc/self/exe: ", ec.message());
  return p.string();
}

/// The last non-empty line of a file (for failure messages), at most 200 characters.
std::string last_line_of(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error&) {
    return "";
  }
  size_t end = text.find_last_not_of(" \r\n\t");
  if (end == std::string::npos) return "";
  size_t start = text.find_last_of('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  std::string line = text.substr(start, end - start + 1);
  const size_t cr = line.find_last_of('\r');
  if (cr != std::string::npos) line = line.substr(cr + 1);
  return line.size() > 200 ? line.substr(0, 200) + "..." : line;
}

/// The value after `key` in a line ("step 200/600" -> "200/600"), up to the next space.
std::string word_after(const std::string& line, const std::string& key) {
  const size_t at = line.find(key);
  if (at == std::string::npos) return "";
  const size_t start = line.find_first_not_of(' ', at + key.size());
  if (start == std::string::npos) return "";
  return line.substr(start, line.find(' ', start) - start);
}

enum class State { Done, Resume, Start };

struct Child {
  size_t run = 0;                  // index into runs
  pid_t pid = -1;
  int fd = -1;                     // read end of the child's stdout + stderr
  int log_fd = -1;                 // <run>/train.log, opened once the run folder exists
  std::string pending;             // output not yet written to the log
  std::string line;                // partial line, for progress
  std::string total_steps;         // from the trainer's "run ..." line
  Clock::time_point started;
  bool eof = false, exited = false;
  int status = 0;
};

class Runner {
 public:
  Runner(const SweepSpec& spec, const SweepOptions& opts) : spec_(spec), opts_(opts), out_(opts.out ? *opts.out : std::cout) {}

  SweepResult run();

 private:
  std::string run_dir(size_t i) const { return (fs::path(dir_) / runs_[i].name).string(); }
  std::string log_path(size_t i) const { return (fs::path(run_dir(i)) / "train.log").string(); }
  State state_of(size_t i) const;
  std::string config_drift(size_t i) const;
  void write_sweep_json();
  void start(size_t i, State st);
  void pump(Child& c);
  void on_line(Child& c, const std::string& line);
  void flush_to_log(Child& c, bool force);
  void finish(Child& c);
  void dry_run();
  std::string tag(size_t i) const;
  std::vector<bool> select_runs() const;
  void load_seconds();
  std::vector<std::pair<size_t, State>> work_list(const std::vector<bool>& selected, int& n_resume);
  void find_identical();
  bool is_alias(size_t i) const;
  void link_aliases();
  void run_all(const std::vector<std::pair<size_t, State>>& todo);
  void wait_children();

  const SweepSpec& spec_;
  SweepOptions opts_;
  std::ostream& out_;
  std::string dir_, exe_;
  std::vector<SweepRun> runs_;
  std::vector<config::Config> configs_;
  std::vector<int64_t> same_as_;     // the earlier run with an identical config (-1: none)
  std::vector<std::string> status_, reasons_;
  std::vector<double> seconds_;
  std::vector<size_t> order_;        // position of each run in this invocation's work list (for [k/N])
  size_t n_todo_ = 0, n_started_ = 0, n_finished_now_ = 0;
  double finished_seconds_ = 0;
  int threads_ = 1;
  std::vector<Child> children_;
  SweepResult result_;
};

State Runner::state_of(size_t i) const {
  if (is_alias(i)) return state_of(static_cast<size_t>(same_as_[i]));
  std::error_code ec;
  const fs::path d = run_dir(i);
  if (fs::exists(d / "summary.json", ec)) return State::Done;
  if (fs::exists(d / "config.yaml", ec) && !io::latest_checkpoint((d / "checkpoints").string()).empty())
    return State::Resume;
  return State::Start;
}

/// Keys whose value in the run's saved config.yaml differs from the sweep file's ("" : none).
std::string Runner::config_drift(size_t i) const {
  const std::string saved_path = (fs::path(run_dir(i)) / "config.yaml").string();
  std::error_code ec;
  if (!fs::exists(saved_path, ec)) return "";
  config::Config saved;
  try {
    saved = config::parse_config(read_file(saved_path), saved_path);
  } catch (const Error&) {
    return "(unreadable config.yaml)";
  }
  config::Config want = configs_[i];
  want.train.runs_dir = saved.train.runs_dir;
  if (want.train.threads == 0) want.train.threads = saved.train.threads;
  config::Schema a = saved.schema(), b = want.schema();
  std::string keys;
  for (size_t f = 0; f < a.fields().size(); ++f)
    if (a.value_text(a.fields()[f]) != b.value_text(b.fields()[f])) keys += (keys.empty() ? "" : ", ") + a.fields()[f].key;
  return keys;
}

std::string Runner::tag(size_t i) const {
  const int width = static_cast<int>(std::to_string(n_todo_).size());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "[%*zu/%zu]", width, order_[i], n_todo_);
  return buf;
}

void Runner::write_sweep_json() {
  ojson j;
  j["name"] = spec_.name;
  j["file"] = spec_.file;
  j["base"] = spec_.base_where;
  j["dir"] = dir_;
  j["updated"] = now_text();
  j["set"] = spec_.overrides;
  ojson grids = ojson::array();
  for (const auto& g : spec_.grids) {
    ojson axes = ojson::array();
    for (const auto& a : g.axes) {
      ojson labels = ojson::array();
      for (const auto& v : a.values) labels.push_back(v.label);
      axes.push_back({{"name", a.name}, {"key", a.key}, {"labels", labels}});
    }
    grids.push_back({{"name", g.name}, {"set", g.overrides}, {"axes", axes}});
  }
  j["grids"] = grids;
  j["layout"] = {{"color", spec_.layout.color},
                 {"facet", spec_.layout.facet},
                 {"select", spec_.layout.select},
                 {"seed", spec_.layout.seed}};
  ojson runs = ojson::array();
  for (size_t i = 0; i < runs_.size(); ++i) {
    ojson axes = ojson::object();
    for (const auto& [name, label] : runs_[i].axes) axes[name] = label;
    ojson r = {{"name", runs_[i].name}, {"grid", runs_[i].grid}, {"axes", axes},
               {"overrides", runs_[i].overrides}, {"status", status_[i]}};
    if (seconds_[i] > 0) r["seconds"] = seconds_[i];
    if (!reasons_[i].empty()) r["reason"] = reasons_[i];
    if (is_alias(i)) r["same_as"] = runs_[static_cast<size_t>(same_as_[i])].name;
    runs.push_back(r);
  }
  j["runs"] = runs;
  write_file_atomic((fs::path(dir_) / "sweep.json").string(), j.dump(2) + "\n");
}

void Runner::start(size_t i, State st) {
  const std::string rdir = run_dir(i);
  std::vector<std::string> args = {exe_, "train"};
  std::string banner;
  if (st == State::Resume) {
    args.insert(args.end(), {"--resume", rdir});
    if (configs_[i].train.threads == 0) args.insert(args.end(), {"--set", "train.threads=" + std::to_string(threads_)});
  } else {
    std::error_code ec;
    fs::remove_all(rdir, ec);  // a folder without a checkpoint: start afresh
    seconds_[i] = 0;
    DYNAMOE_CHECK(!ec, "sweep: cannot remove '", rdir, "': ", ec.message());
    config::Config cfg = configs_[i];
    cfg.train.runs_dir = dir_;
    if (cfg.train.threads == 0) cfg.train.threads = threads_;
    const std::string cfg_path = (fs::path(dir_) / "configs" / (runs_[i].name + ".yaml")).string();
    write_file_atomic(cfg_path, "# " + runs_[i].name + " of sweep " + spec_.name + " (written by dynamoe sweep)\n" + cfg.to_yaml());
    args.insert(args.end(), {"--config", cfg_path, "--name", runs_[i].name});
  }
  args.push_back("--plain");
  for (size_t a = 0; a < args.size(); ++a) banner += (a ? " " : "") + args[a];
  banner = "== " + now_text() + " dynamoe sweep: " + banner + "\n";

  // Everything the child needs is prepared before fork(): only async-signal-safe calls after it.
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  if (!std::getenv("OMP_WAIT_POLICY")) env.emplace_back("OMP_WAIT_POLICY=PASSIVE");  // two trainers share the cores
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  int fds[2];
  DYNAMOE_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "sweep: pipe: ", std::strerror(errno));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  DYNAMOE_CHECK(pid >= 0, "sweep: fork: ", std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);                        // its own group: the sweep decides when it stops
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);     // and it dies with the sweep, even on SIGKILL
    if (::getppid() != parent) ::_exit(127);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    const char msg[] = "dynamoe sweep: cannot execute the dynamoe binary\n";
    ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  Child c;
  c.run = i;
  c.pid = pid;
  c.fd = fds[0];
  c.pending = banner;
  c.started = Clock::now();
  if (st == State::Resume) {
    flush_to_log(c, false);
  }
  children_.push_back(std::move(c));
  status_[i] = "running";
  ++n_started_;
  out_ << tag(i) << " " << (st == State::Resume ? "resume " : "start  ") << runs_[i].name << std::endl;
  write_sweep_json();
}

/// Appends pending output to <run>/train.log once the run folder exists (the trainer creates
/// it after checking the config and the data); `force` creates the folder (failed early).
void Runner::flush_to_log(Child& c, bool force) {
  if (c.log_fd < 0) {
    const std::string rdir = run_dir(c.run);
    std::error_code ec;
    if (!fs::exists(fs::path(rdir) / "config.yaml", ec)) {
      if (!force) return;
      make_dirs(rdir);
    }
    c.log_fd = ::open(log_path(c.run).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (c.log_fd < 0) return;
  }
  size_t off = 0;
  while (off < c.pending.size()) {
    const ssize_t n = ::write(c.log_fd, c.pending.data() + off, c.pending.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  c.pending.clear();
}

void Runner::on_line(Child& c, const std::string& line) {
  // The trainer prints "run DIR: ... N steps (...)" once and "eval  step S  test loss L  accuracy A% ..." per evaluation.
  if (line.rfind("run ", 0) == 0) {
    const size_t at = line.rfind(" steps (");
    const size_t start = at == std::string::npos ? at : line.rfind(' ', at - 1);
    if (start != std::string::npos) c.total_steps = line.substr(start + 1, at - start - 1);
  }
  if (line.rfind("eval  step ", 0) == 0) {
    const std::string step = word_after(line, "eval  step");
    const std::string acc = word_after(line, "accuracy"), ppl = word_after(line, "perplexity");  // classifiers, LMs
    out_ << tag(c.run) << " eval   " << runs_[c.run].name << "  step " << step
         << (c.total_steps.empty() ? "" : "/" + c.total_steps)
         << (acc.empty() && !ppl.empty() ? "  perplexity " + ppl : "  test accuracy " + acc) << std::endl;
  }
}

void Runner::pump(Child& c) {
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(c.fd, buf, sizeof(buf));
    if (n > 0) {
      c.pending.append(buf, static_cast<size_t>(n));
      for (ssize_t k = 0; k < n; ++k) {
        if (buf[k] == '\n') {
          on_line(c, c.line);
          c.line.clear();
        } else if (buf[k] != '\r') {
          if (c.line.size() < 4096) c.line += buf[k];
        }
      }
      continue;
    }
    if (n == 0) c.eof = true;
    break;  // EAGAIN, EINTR or EOF
  }
  flush_to_log(c, false);
}

void Runner::finish(Child& c) {
  pump(c);
  flush_to_log(c, true);
  if (c.log_fd >= 0) ::close(c.log_fd);
  ::close(c.fd);
  const size_t i = c.run;
  const double secs = std::chrono::duration<double>(Clock::now() - c.started).count();
  seconds_[i] += secs;
  std::error_code ec;
  const bool ok = WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0 &&
                  fs::exists(fs::path(run_dir(i)) / "summary.json", ec);
  RunOutcome o{runs_[i].name, "", log_path(i), ""};
  if (ok) {
    status_[i] = "done";
    o.status = "finished";
    ++result_.finished;
    ++n_finished_now_;
    finished_seconds_ += secs;
    std::string acc;  // the run's headline: test accuracy, or val perplexity for language models
    try {
      const auto s = nlohmann::json::parse(read_file((fs::path(run_dir(i)) / "summary.json").string()));
      acc = s.contains("val_perplexity") ? fmt("val perplexity %.3f", s.value("val_perplexity", 0.0))
                                         : fmt("test accuracy %.2f%%", 100.0 * s.value("test_accuracy", 0.0));
    } catch (const std::exception&) {
    }
    size_t left = 0;
    for (size_t k = 0; k < runs_.size(); ++k) left += status_[k] == "pending" || status_[k] == "running";
    const double per_run = finished_seconds_ / static_cast<double>(n_finished_now_);
    const double eta = per_run * static_cast<double>(left) / std::max(1, opts_.jobs);
    out_ << tag(i) << " done   " << runs_[i].name << "  " << acc << "  " << clock_text(secs)
         << "  (" << result_.done_before + result_.finished << "/" << runs_.size() << " done"
         << (left > 0 ? ", ETA " + clock_text(eta) : std::string()) << ")" << std::endl;
  } else if (g_signal != 0) {
    status_[i] = "interrupted";
    o.status = "interrupted";
  } else {
    status_[i] = "failed";
    o.status = "failed";
    ++result_.failed;
    const std::string how = WIFEXITED(c.status) ? str("exit code ", WEXITSTATUS(c.status))
                                                : str("killed by signal ", WTERMSIG(c.status));
    o.reason = how + ": " + last_line_of(log_path(i));
    reasons_[i] = o.reason;
    out_ << tag(i) << " FAILED " << runs_[i].name << " (" << o.reason << "); log: " << log_path(i) << std::endl;
  }
  result_.runs.push_back(o);
  write_sweep_json();
}

/// same_as_[i]: the first earlier run whose resolved config is the same text (-1: none). A
/// moe.layers.total_experts that gives the experts per layer the schedule gives without it has no
/// effect and is not part of the comparison (an equal-budget grid repeats such cells).
void Runner::find_identical() {
  same_as_.assign(runs_.size(), -1);
  std::map<std::string, size_t> first;
  for (size_t i = 0; i < runs_.size(); ++i) {
    config::Config c = configs_[i];
    if (c.moe.layers.total_experts > 0) {
      if (const auto info = model_info(c)) {
        config::MoEConfig plain = c.moe;
        plain.layers.total_experts = 0;
        const int64_t layers = static_cast<int64_t>(info->experts.size());
        if (layers > 0 && models::experts_and_k_max(plain, layers).first == info->experts) c.moe.layers.total_experts = 0;
      }
    }
    const auto [it, fresh] = first.emplace(c.to_yaml(), i);
    if (!fresh) same_as_[i] = static_cast<int64_t>(it->second);
  }
}

/// A run identical to an earlier one, unless a real folder of its own exists (trained before
/// this detection, or by hand): that one is kept and treated as a run.
bool Runner::is_alias(size_t i) const {
  if (same_as_.empty() || same_as_[i] < 0) return false;
  std::error_code ec;
  const fs::path d = run_dir(i);
  return fs::is_symlink(d, ec) || !fs::exists(d, ec);
}

/// Links each identical run's folder to its original once the original is done.
void Runner::link_aliases() {
  result_.linked = 0;
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (!is_alias(i)) continue;
    const size_t j = static_cast<size_t>(same_as_[i]);
    std::error_code ec;
    if (!fs::exists(fs::path(run_dir(j)) / "summary.json", ec)) continue;
    if (!fs::is_symlink(run_dir(i), ec)) {
      fs::create_directory_symlink(runs_[j].name, run_dir(i), ec);  // relative: the folder moves with the sweep
      DYNAMOE_CHECK(!ec, "sweep: cannot link '", run_dir(i), "' to '", runs_[j].name, "': ", ec.message());
    }
    status_[i] = "same as " + runs_[j].name;
    ++result_.linked;
  }
}

void Runner::dry_run() {
  size_t width = 4;
  for (const auto& r : runs_) width = std::max(width, r.name.size());
  out_ << "sweep " << dir_ << ": " << runs_.size() << " runs (dry run: nothing is started)\n";
  char head[256];
  std::snprintf(head, sizeof(head), "%-*s  %-7s %10s %10s  %s\n", static_cast<int>(width), "run", "state", "params",
                "active", "overrides of the axes");
  out_ << head;
  for (size_t i = 0; i < runs_.size(); ++i) {
    const State st = state_of(i);
    std::string params = "?", active = "?";
    if (auto info = model_info(configs_[i])) {
      params = std::to_string(info->parameters);
      // Active parameters per example for the routers whose count per token is fixed.
      const config::MoEConfig& m = configs_[i].moe;
      std::vector<double> act;
      bool known = true;
      const auto& per_token = moe::router_registry().at(m.router.kind()).active_per_token;
      for (int64_t e : info->experts) {
        const double fixed = per_token && !m.layers.k_max ? per_token(m.router.options(), e) : -1;
        if (fixed >= 0) {
          act.push_back(fixed);
        } else {
          known = false;
        }
      }
      if (info->experts.empty()) active = params;
      else if (known) active = std::to_string(static_cast<int64_t>(info->active_parameters(act) + 0.5));
    }
    std::string overrides;
    size_t skip = spec_.overrides.size();
    for (const auto& g : spec_.grids)
      if (g.name == runs_[i].grid) skip += g.overrides.size();
    for (size_t k = skip; k < runs_[i].overrides.size(); ++k) overrides += (overrides.empty() ? "" : " ") + runs_[i].overrides[k];
    char line[512];
    std::snprintf(line, sizeof(line), "%-*s  %-7s %10s %10s  ", static_cast<int>(width), runs_[i].name.c_str(),
                  st == State::Done ? "done" : st == State::Resume ? "resume" : "start", params.c_str(), active.c_str());
    if (is_alias(i)) overrides += "  (same config as " + runs_[static_cast<size_t>(same_as_[i])].name + ": run once)";
    out_ << line << overrides << "\n";
  }
  out_ << std::flush;
}

/// Runs this invocation may start: those whose name contains an --only string (all without it).
std::vector<bool> Runner::select_runs() const {
  std::vector<bool> selected(runs_.size(), true);
  if (!opts_.only.empty()) {
    for (size_t i = 0; i < runs_.size(); ++i)
      selected[i] = std::any_of(opts_.only.begin(), opts_.only.end(),
                                [&](const std::string& s) { return runs_[i].name.find(s) != std::string::npos; });
    DYNAMOE_CHECK(std::count(selected.begin(), selected.end(), true) > 0, "sweep: --only matches none of the ",
                  runs_.size(), " runs");
    for (size_t i = 0; i < runs_.size(); ++i)  // a selected identical run is had by running its original
      if (selected[i] && is_alias(i)) selected[static_cast<size_t>(same_as_[i])] = true;
  }
  return selected;
}

/// Training time of earlier invocations (a resumed run's time adds up), from the folder's sweep.json.
void Runner::load_seconds() {
  try {
    const std::string prev = (fs::path(dir_) / "sweep.json").string();
    std::error_code ec;
    if (fs::exists(prev, ec)) {
      const auto j = nlohmann::json::parse(read_file(prev));
      std::map<std::string, double> secs;
      for (const auto& r : j.value("runs", nlohmann::json::array())) secs[r.value("name", "")] = r.value("seconds", 0.0);
      for (size_t i = 0; i < runs_.size(); ++i)
        if (secs.count(runs_[i].name)) seconds_[i] = secs[runs_[i].name];
    }
  } catch (const std::exception&) {
    // an unreadable sweep.json is rewritten below
  }
}

/// Marks runs done or skipped (warning on config drift); returns the rest to run, counting resumes in `n_resume`.
std::vector<std::pair<size_t, State>> Runner::work_list(const std::vector<bool>& selected, int& n_resume) {
  std::vector<std::pair<size_t, State>> todo;
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (is_alias(i)) {
      status_[i] = "same as " + runs_[static_cast<size_t>(same_as_[i])].name;
      ++result_.identical;
      continue;
    }
    const State st = state_of(i);
    if (st != State::Start) {
      const std::string drift = config_drift(i);
      if (!drift.empty())
        out_ << "warning: " << runs_[i].name << ": its config.yaml differs from the sweep file in " << drift
             << "; kept as it is (remove " << run_dir(i) << " to run it again)" << std::endl;
    }
    if (st == State::Done) {
      status_[i] = "done";
      ++result_.done_before;
      result_.runs.push_back({runs_[i].name, "done", log_path(i), ""});
    } else if (!selected[i]) {
      status_[i] = "skipped";
    } else {
      todo.emplace_back(i, st);
      order_[i] = todo.size();
      n_resume += st == State::Resume;
    }
  }
  return todo;
}

/// Runs `todo`, opts_.jobs at a time, until all have finished or a signal stopped them (SIGTERM, then SIGKILL).
void Runner::run_all(const std::vector<std::pair<size_t, State>>& todo) {
  size_t next = 0;
  bool stopping = false;
  Clock::time_point kill_deadline;
  while (next < todo.size() || !children_.empty()) {
    if (g_signal != 0 && !stopping) {
      stopping = true;
      out_ << "\nsweep: " << (g_signal == SIGINT ? "interrupted" : "terminated") << "; stopping " << children_.size()
           << " running " << (children_.size() == 1 ? "run" : "runs")
           << " (the next `dynamoe sweep` continues them from their last checkpoint)" << std::endl;
      for (const Child& c : children_) ::kill(-c.pid, SIGTERM);
      kill_deadline = Clock::now() + std::chrono::seconds(10);
    }
    if (stopping && Clock::now() > kill_deadline)
      for (const Child& c : children_) ::kill(-c.pid, SIGKILL);
    while (!stopping && next < todo.size() && children_.size() < static_cast<size_t>(opts_.jobs)) {
      start(todo[next].first, todo[next].second);
      ++next;
    }
    if (children_.empty()) break;
    wait_children();
  }
}

/// Waits (up to 250 ms) for the children's output, passes it on, and finishes those that exited.
void Runner::wait_children() {
  std::vector<pollfd> pfds;
  for (const Child& c : children_)
    if (!c.eof) pfds.push_back({c.fd, POLLIN, 0});
  if (!pfds.empty()) {
    ::poll(pfds.data(), pfds.size(), 250);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (Child& c : children_)
    if (!c.eof) pump(c);
  for (Child& c : children_) {
    if (c.exited) continue;
    const pid_t r = ::waitpid(c.pid, &c.status, WNOHANG);
    if (r == c.pid) c.exited = true;
  }
  for (auto it = children_.begin(); it != children_.end();) {
    if (it->exited) {
      finish(*it);
      it = children_.erase(it);
    } else {
      ++it;
    }
  }
}

SweepResult Runner::run() {
  runs_ = expand(spec_);
  configs_ = resolve_runs(spec_, runs_);  // a typo fails here, before anything is written
  find_identical();
  const std::vector<bool> selected = select_runs();
  dir_ = sweep_dir(spec_, opts_);
  result_.dir = dir_;
  result_.total = static_cast<int>(runs_.size());
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  opts_.jobs = std::max(1, opts_.jobs);
  threads_ = std::max(1, cores / opts_.jobs);
  if (opts_.dry_run) {
    dry_run();
    return result_;
  }
  exe_ = opts_.exe.empty() ? self_exe() : opts_.exe;
  make_dirs(dir_);
  FolderLock lock(dir_);
  SignalScope signals;

  status_.assign(runs_.size(), "pending");
  reasons_.assign(runs_.size(), "");
  seconds_.assign(runs_.size(), 0);
  order_.assign(runs_.size(), 0);
  load_seconds();
  int n_resume = 0;
  const std::vector<std::pair<size_t, State>> todo = work_list(selected, n_resume);
  n_todo_ = todo.size();
  link_aliases();
  write_sweep_json();
  out_ << "sweep " << dir_ << ": " << runs_.size() << " runs (" << result_.done_before << " done, " << n_resume
       << " to resume, " << todo.size() - n_resume << " to start), " << opts_.jobs << " at a time, " << threads_
       << (threads_ == 1 ? " thread" : " threads") << " each unless train.threads is set" << std::endl;
  if (result_.identical > 0)
    out_ << "sweep: " << result_.identical << (result_.identical == 1 ? " run has" : " runs have")
         << " the same config as an earlier run: trained once, linked to it" << std::endl;

  run_all(todo);
  link_aliases();
  result_.interrupted_by = g_signal;
  if (g_signal != 0)
    for (size_t i = 0; i < runs_.size(); ++i)
      if (status_[i] == "pending") result_.runs.push_back({runs_[i].name, "pending", log_path(i), ""});
  write_sweep_json();
  return result_;
}

}  // namespace

std::string sweep_dir(const SweepSpec& spec, const SweepOptions& opts) {
  std::string parent = opts.runs_dir;
  if (parent.empty()) parent = config::parse_config(spec.base_yaml, spec.base_where, spec.overrides).train.runs_dir;
  return (fs::path(parent) / spec.name).string();
}

SweepResult run_sweep(const SweepSpec& spec, const SweepOptions& opts) { return Runner(spec, opts).run(); }

}  // namespace dynamoe::sweep
