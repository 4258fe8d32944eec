#include "dynamoe/bench/moe_bench.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "dynamoe/bench/peer_process.h"
#include "dynamoe/bench/stats.h"
#include "dynamoe/io/safetensors.h"
#include "dynamoe/models/moe_options.h"
#include "dynamoe/moe/grouped_experts.h"
#include "dynamoe/moe/moe_layer.h"
#include "dynamoe/moe/routers/dynamoe.h"
#include "dynamoe/moe/routers/top_k.h"
#include "dynamoe/moe/routers/top_p.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"

namespace dynamoe::bench {
namespace fs = std::filesystem;
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// One MoE problem: a linear gate and E SwiGLU experts (the peers' layout: stacked weights).
struct Problem {
  std::string id;
  int64_t T = 0, D = 0, F = 0, E = 0, k = 0;
  at::Tensor x, wg, w1, w3, w2, dy;  // [T, D], [E, D], [E, F, D], [E, F, D], [E, D, F], [T, D]
  double active_flops() const { return 6.0 * double(T) * double(k) * double(D) * double(F); }  // forward
};

/// skew > 0 adds a shared direction to every token that the gate favours for low expert ids.
Problem make_problem(const std::string& id, int64_t T, int64_t D, int64_t F, int64_t E, int64_t k, double skew = 0) {
  torch::manual_seed(1234);
  Problem p;
  p.id = id;
  p.T = T;
  p.D = D;
  p.F = F;
  p.E = E;
  p.k = k;
  p.x = torch::randn({T, D});
  p.wg = torch::randn({E, D}) / std::sqrt(double(D));
  if (skew > 0) {
    at::Tensor u = torch::randn({D});
    u = u / u.norm();
    p.x = p.x + skew * u;
    at::Tensor ramp = torch::linspace(1.0, -1.0, E).unsqueeze(1);  // [E, 1]
    p.wg = p.wg + ramp * u.unsqueeze(0);
  }
  p.w1 = torch::randn({E, F, D}) / std::sqrt(double(D));
  p.w3 = torch::randn({E, F, D}) / std::sqrt(double(D));
  p.w2 = torch::randn({E, D, F}) / std::sqrt(double(F));
  p.dy = torch::randn({T, D});
  return p;
}

/// A dynamoe MoE layer holding the problem's weights.
moe::MoELayer make_layer(const Problem& p, const std::string& router, const std::string& kernel,
                         const std::string& precision, double top_p = 0.5) {
  config::MoEConfig c;
  c.router = moe::router_choice(router);
  if (router == "top_k") {
    auto& o = c.router.as_mutable<moe::TopKOptions>();
    o.k = p.k;
    o.normalize = true;
  } else if (router == "top_p") {
    c.router.as_mutable<moe::TopPOptions>().p = top_p;
  } else if (router == "dynamoe") {
    c.router.as_mutable<moe::DynamoeOptions>().sigma = 0;
  }
  c.experts.kind = "swiglu";
  c.experts.hidden = p.F;
  c.losses.load_balance = 0;
  c.losses.z_loss = 0;
  c.kernel = kernel;
  c.precision = precision;
  moe::MoELayer layer(models::moe_layer_options(c, p.D, p.E));
  torch::NoGradGuard no_grad;
  auto named = layer->named_parameters();
  named["gate.weight"].copy_(p.wg);
  for (int64_t e = 0; e < p.E; ++e) {
    const std::string pre = "experts." + std::to_string(e) + ".";
    named[pre + "w1"].copy_(p.w1[e]);
    named[pre + "w3"].copy_(p.w3[e]);
    named[pre + "w2"].copy_(p.w2[e]);
  }
  return layer;
}

/// Something to time: forward only or forward + backward, one call.
struct Impl {
  std::string name;
  bool peer = false;  // timed inside the python peer
  std::function<void()> fwd, fwdbwd;
  std::string peer_impl, peer_dtype;
};

/// Forward/backward closures over a dynamoe layer; the last forward's mean active experts in *k_bar.
Impl dynamoe_impl(const std::string& name, const Problem& p, moe::MoELayer layer, double* k_bar = nullptr) {
  auto x = std::make_shared<at::Tensor>(p.x.clone());
  Impl im;
  im.name = name;
  im.fwd = [layer, x, k_bar]() mutable {
    torch::NoGradGuard ng;
    layer->eval();
    auto o = layer->forward(*x);
    if (k_bar) *k_bar = o.stats.active_mean;
  };
  const at::Tensor dy = p.dy;
  im.fwdbwd = [layer, x, dy]() mutable {
    for (auto& q : layer->parameters()) q.mutable_grad() = at::Tensor();
    layer->train();
    at::Tensor xg = x->detach().requires_grad_(true);
    layer->forward(xg).y.backward(dy);
  };
  return im;
}

/// Dense SwiGLU of width k F in LibTorch: the FLOP floor.
Impl dense_impl(const Problem& p) {
  torch::manual_seed(7);
  const int64_t H = p.k * p.F;
  auto w = std::make_shared<std::vector<at::Tensor>>(std::vector<at::Tensor>{
      (torch::randn({H, p.D}) / std::sqrt(double(p.D))).requires_grad_(true),
      (torch::randn({H, p.D}) / std::sqrt(double(p.D))).requires_grad_(true),
      (torch::randn({p.D, H}) / std::sqrt(double(H))).requires_grad_(true)});
  auto x = std::make_shared<at::Tensor>(p.x.clone());
  auto f = [w](const at::Tensor& in) {
    return (torch::silu(in.mm((*w)[0].t())) * in.mm((*w)[1].t())).mm((*w)[2].t());
  };
  Impl im;
  im.name = "dynamoe dense";
  im.fwd = [f, x] {
    torch::NoGradGuard ng;
    f(*x);
  };
  const at::Tensor dy = p.dy;
  im.fwdbwd = [f, w, x, dy] {
    for (auto& t : *w) t.mutable_grad() = at::Tensor();
    f(x->detach().requires_grad_(true)).backward(dy);
  };
  return im;
}

Impl peer_impl(const std::string& name, const std::string& impl, const std::string& dtype) {
  Impl im;
  im.name = name;
  im.peer = true;
  im.peer_impl = impl;
  im.peer_dtype = dtype;
  return im;
}

/// The vector extensions the CPU reports (/proc/cpuinfo flags) that matter to GEMMs and bf16.
std::string cpu_capabilities() {
  std::ifstream cpu("/proc/cpuinfo");
  std::set<std::string> flags;
  for (std::string line; std::getline(cpu, line);)
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      for (std::string w; words >> w;) flags.insert(w);
      break;
    }
  std::string out;
  for (const char* f : {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
                        "amx_bf16", "amx_int8"})
    if (flags.count(f)) out += (out.empty() ? "" : " ") + std::string(f);
  return out.empty() ? "none of avx2/avx512/amx" : out;
}

double time_call(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return seconds_since(t0);
}

double calib_seconds(at::ScalarType dtype) {
  static std::map<at::ScalarType, std::pair<at::Tensor, at::Tensor>> ab;
  auto& m = ab[dtype];
  if (!m.first.defined()) m = {torch::randn({1024, 1024}).to(dtype), torch::randn({1024, 1024}).to(dtype)};
  return time_call([&] { at::mm(m.first, m.second); });
}

/// Samples of every implementation, per round, and the calibration GEMM of each round.
struct Samples {
  std::map<std::string, std::vector<double>> t;  // name/mode -> seconds per round
  std::vector<double> calib;                      // seconds per round
  /// Rounds whose calibration ran within 0.85 of the best (the machine was not in a burst).
  std::vector<size_t> clean() const {
    const double best = *std::min_element(calib.begin(), calib.end());
    std::vector<size_t> r;
    for (size_t i = 0; i < calib.size(); ++i)
      if (best / calib[i] >= 0.85) r.push_back(i);
    return r;
  }
  double med(const std::string& key) const {
    auto it = t.find(key);
    if (it == t.end()) return NAN;
    std::vector<double> v;
    for (size_t i : clean())
      if (i < it->second.size()) v.push_back(it->second[i]);
    return median(v);
  }
  double min(const std::string& key) const {
    auto it = t.find(key);
    return it == t.end() || it->second.empty() ? NAN : *std::min_element(it->second.begin(), it->second.end());
  }
  /// Per clean round, the time of `a` over the time of `b` in that same round: paired ratios,
  /// whose spread says how far a ratio can be trusted (both sides see the same machine state).
  std::vector<double> ratios(const std::string& a, const std::string& b) const {
    auto ia = t.find(a), ib = t.find(b);
    std::vector<double> v;
    if (ia == t.end() || ib == t.end()) return v;
    for (size_t i : clean())
      if (i < ia->second.size() && i < ib->second.size()) v.push_back(ia->second[i] / ib->second[i]);
    return v;
  }
  double calib_gflops() const {
    std::vector<double> v;
    for (size_t i : clean()) v.push_back(calib[i]);
    return 2.0 * 1024 * 1024 * 1024 / median(v) / 1e9;
  }
};

class Bench {
 public:
  Bench(const BenchOptions& o, std::ostream& out) : o_(o), out_(out) {
    scratch_ = o.scratch_dir.empty() ? (fs::temp_directory_path() / ("dynamoe-bench-" + std::to_string(getpid())))
                                     : fs::path(o.scratch_dir);
    make_dirs(scratch_.string());
    if (o.peers) {
      std::string script = o.peers_script;
      DYNAMOE_CHECK(fs::exists(script), "bench: the PyTorch peer script '", script,
                    "' does not exist (give --peers-script, or --no-peers)");
      DYNAMOE_CHECK(fs::exists(o.python), "bench: python '", o.python,
                    "' not found (Debian's python3-torch; or run with --no-peers)");
      py_ = std::make_unique<PeerProcess>(
          std::vector<std::string>{o.python, script, "--threads", std::to_string(o.threads)},
          std::vector<std::string>{"OMP_WAIT_POLICY=PASSIVE"});
      hello_ = py_->call({{"cmd", "hello"}});
    }
  }
  ~Bench() {
    std::error_code ec;
    if (o_.scratch_dir.empty()) fs::remove_all(scratch_, ec);
  }

  void header() {
    std::ifstream cpu("/proc/cpuinfo");
    std::string line, model = "?";
    while (std::getline(cpu, line))
      if (line.rfind("model name", 0) == 0) {
        model = line.substr(line.find(':') + 2);
        break;
      }
    std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
    const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
    const char* omp = std::getenv("OMP_WAIT_POLICY");
    out_ << "dynamoe bench, " << date << "\n"
         << "machine: " << model << ", " << std::thread::hardware_concurrency() << " cores; threads "
         << at::get_num_threads() << "; ATEN_CPU_CAPABILITY=" << (cap ? cap : "(unset)")
         << "; OMP_WAIT_POLICY=" << (omp ? omp : "(unset)") << "\n"
         << "allocator: glibc malloc + dynamoe buffer pool; bf16 GEMM: " << moe::bf16_gemm_backend() << "\n";
    if (py_)
      out_ << "peer: PyTorch " << hello_.value("torch", "?") << " (" << o_.python << "), threads "
           << hello_.value("threads", 0) << ", CPU capability " << hello_.value("capability_used", "?") << "\n";
    out_ << "capabilities: " << cpu_capabilities() << "\n";
    out_ << "protocol: " << o_.warmup << " warm-up + " << o_.rounds
         << " interleaved rounds (order reversed every other round); median over clean rounds (calibration\n"
         << "  GEMM >= 0.85 of its best), min in (); spread = 25th-75th percentile of the per-round ratio to the\n"
         << "  HF loop (each round's two times measured moments apart)\n"
         << "columns: /dense* = time over the faster dense SwiGLU of equal active FLOPs (LibTorch or PyTorch);\n"
         << "  GEMM eff = active expert FLOP/s over the calibration GEMM's; non-GEMM = 1 - GEMM eff, the share\n"
         << "  of time not explained by GEMMs at calibration speed\n";
  }

  /// Times `impls` on `p` in both modes; returns the samples.
  Samples measure(const Problem& p, const std::vector<Impl>& impls, const std::vector<std::string>& modes,
                  int rounds, int warmup, int reps_per_round = 1, at::ScalarType calib_dtype = at::kFloat) {
    if (py_ && any_peer(impls)) load(p);
    Samples s;
    for (int r = -warmup; r < rounds; ++r) {
      const double c = calib_seconds(calib_dtype);
      // Odd rounds run the implementations in reverse order: none always follows the same one
      // (whose caches, page faults or frequency it would inherit).
      for (size_t n = 0; n < impls.size(); ++n) {
        const Impl& im = impls[(r & 1) ? impls.size() - 1 - n : n];
        for (const auto& mode : modes) {
          const double t = run(im, p, mode, reps_per_round);
          if (r >= 0) s.t[im.name + "/" + mode].push_back(t);
        }
      }
      if (r >= 0) s.calib.push_back(c);
    }
    return s;
  }

  /// Compares dynamoe's outputs and gradients with the peer's HF loop (fp32 reference); prints
  /// one line per variant and returns the number that fail `tol` (relative).
  int check(const Problem& p, const std::vector<std::pair<std::string, moe::MoELayer>>& variants, double tol) {
    if (!py_) return 0;
    load(p);
    const std::string ref_path = (scratch_ / (p.id + "-ref.safetensors")).string();
    nlohmann::json r = py_->call({{"cmd", "check"}, {"id", p.id}, {"dtype", "float32"}, {"out", ref_path}});
    io::SafetensorsFile ref = io::load_safetensors(ref_path);
    int failed = 0;
    for (auto [name, layer] : variants) {
      layer->train();
      for (auto& q : layer->parameters()) q.mutable_grad() = at::Tensor();
      at::Tensor x = p.x.clone().requires_grad_(true);
      at::Tensor y = layer->forward(x).y;
      y.backward(p.dy);
      auto g = layer->named_parameters();
      std::vector<at::Tensor> w1, w3, w2;
      for (int64_t e = 0; e < p.E; ++e) {
        const std::string pre = "experts." + std::to_string(e) + ".";
        for (auto [name2, dst] : {std::pair<const char*, std::vector<at::Tensor>*>{"w1", &w1}, {"w3", &w3}, {"w2", &w2}}) {
          at::Tensor gr = g[pre + name2].grad();
          dst->push_back(gr.defined() ? gr : torch::zeros_like(g[pre + name2]));
        }
      }
      std::map<std::string, at::Tensor> mine = {{"y", y.detach().to(at::kFloat)}, {"dx", x.grad()},
                                                {"dwg", g["gate.weight"].grad()}, {"dw1", torch::stack(w1)},
                                                {"dw3", torch::stack(w3)}, {"dw2", torch::stack(w2)}};
      double abs_err = 0, rel_err = 0;
      for (const auto& [key, t] : mine) {
        const at::Tensor& want = ref.at(key);
        const double a = (t - want).abs().max().item<double>();
        abs_err = std::max(abs_err, a);
        rel_err = std::max(rel_err, a / std::max(want.abs().max().item<double>(), 1e-30));
      }
      const bool ok = rel_err <= tol;
      failed += !ok;
      out_ << "  check " << name << " vs HF loop (fp32), outputs + all gradients: max abs err "
           << fmt("%.2e", abs_err) << ", max rel err " << fmt("%.2e", rel_err) << (ok ? "  ok" : "  FAILED")
           << " (tol " << fmt("%.0e", tol) << " rel)\n";
    }
    for (const auto& kv : r["max_rel_err"].items())
      out_ << "  check peer " << kv.key() << " vs HF loop: max rel err " << fmt("%.2e", kv.value().get<double>())
           << "\n";
    return failed;
  }

  bool has_peers() const { return py_ != nullptr; }
  PeerProcess& peer() { return *py_; }
  std::ostream& out() { return out_; }
  const BenchOptions& options() const { return o_; }

 private:
  static bool any_peer(const std::vector<Impl>& impls) {
    return std::any_of(impls.begin(), impls.end(), [](const Impl& i) { return i.peer; });
  }
  void load(const Problem& p) {
    if (loaded_ == p.id) return;
    const std::string path = (scratch_ / (p.id + ".safetensors")).string();
    io::save_safetensors(path, {{"x", p.x}, {"wg", p.wg}, {"w1", p.w1}, {"w3", p.w3}, {"w2", p.w2}, {"dy", p.dy}},
                         {{"k", std::to_string(p.k)}});
    py_->call({{"cmd", "load"}, {"id", p.id}, {"file", path}});
    loaded_ = p.id;
  }
  double run(const Impl& im, const Problem& p, const std::string& mode, int reps) {
    if (im.peer) {
      nlohmann::json r = py_->call({{"cmd", "time"}, {"id", p.id}, {"impl", im.peer_impl}, {"dtype", im.peer_dtype},
                                    {"mode", mode}, {"reps", reps}});
      return median(r["seconds"].get<std::vector<double>>());
    }
    std::vector<double> v;
    for (int i = 0; i < reps; ++i) v.push_back(time_call(mode == "fwd" ? im.fwd : im.fwdbwd));
    return median(v);
  }

  BenchOptions o_;
  std::ostream& out_;
  fs::path scratch_;
  std::unique_ptr<PeerProcess> py_;
  nlohmann::json hello_;
  std::string loaded_;
};

/// One table row per implementation: time, ratio to a reference, tokens/s, GEMM efficiency.
void print_table(Bench& b, const Problem& p, const Samples& s, const std::vector<Impl>& impls, const std::string& mode,
                 const std::string& dense_key, const std::string& peer_dense_key, const std::string& hf_key) {
  std::ostream& out = b.out();
  const double calib = s.calib_gflops();
  const double flops = p.active_flops() * (mode == "fwd" ? 1.0 : 3.0);
  out << "  " << (mode == "fwd" ? "forward" : "forward+backward") << ": calibration GEMM " << fmt("%.0f", calib)
      << " GFLOP/s, clean rounds " << s.clean().size() << "/" << s.calib.size() << "\n";
  char row[256];
  std::snprintf(row, sizeof row, "  %-26s %16s %9s %9s %11s %11s %9s %9s\n", "implementation", "ms (min)", "/dense*",
                "/HF loop", "spread", "tokens/s", "GEMM eff", "non-GEMM");
  out << row;
  for (const auto& im : impls) {
    const std::string key = im.name + "/" + mode;
    const double t = s.med(key), tmin = s.min(key);
    // the floor: the faster of the two dense SwiGLUs (LibTorch and PyTorch share the BLAS)
    const double dense = std::fmin(s.med(dense_key + "/" + mode), s.med(peer_dense_key + "/" + mode));
    const double hf = s.med(hf_key + "/" + mode);
    const double eff = flops / t / 1e9 / calib;
    const std::vector<double> r = s.ratios(key, hf_key + "/" + mode);
    const std::string spread = r.empty() || key == hf_key + "/" + mode
                                   ? "-"
                                   : fmt("%.2f", quantile(r, 0.25)) + "-" + fmt("%.2f", quantile(r, 0.75));
    std::snprintf(row, sizeof row, "  %-26s %8.1f (%5.1f) %9s %9s %11s %11.0f %8.0f%% %8.0f%%\n", im.name.c_str(),
                  t * 1e3, tmin * 1e3, std::isnan(dense) ? "-" : fmt("%.2f", t / dense).c_str(),
                  std::isnan(hf) ? "-" : fmt("%.2f", t / hf).c_str(), spread.c_str(), double(p.T) / t, 100 * eff,
                  100 * std::max(0.0, 1 - eff));
    out << row;
  }
  // The in-process question: the same dense SwiGLU through LibTorch here and through PyTorch in
  // the peer process, paired round by round.
  const std::vector<double> dd = s.ratios(dense_key + "/" + mode, peer_dense_key + "/" + mode);
  if (!dd.empty() && dense_key == "dynamoe dense" && peer_dense_key == "pytorch dense")
    out << "  " << dense_key << " / " << peer_dense_key << ": " << fmt("%.3f", median(dd)) << " (per-round 25th-75th "
        << fmt("%.3f", quantile(dd, 0.25)) << "-" << fmt("%.3f", quantile(dd, 0.75)) << ", min "
        << fmt("%.3f", *std::min_element(dd.begin(), dd.end())) << ", max "
        << fmt("%.3f", *std::max_element(dd.begin(), dd.end())) << ", " << dd.size() << " rounds)\n";
}

/// The comparison set; `all_peers` adds PyTorch's sort/gather and padded-bmm variants (several
/// seconds a call at fine-grained shapes, so only on the main shapes).
std::vector<Impl> standard_impls(Bench& b, const Problem& p, bool with_loop, bool all_peers) {
  std::vector<Impl> impls = {dynamoe_impl("dynamoe grouped", p, make_layer(p, "top_k", "grouped", "fp32"))};
  if (with_loop) impls.push_back(dynamoe_impl("dynamoe loop", p, make_layer(p, "top_k", "loop", "fp32")));
  impls.push_back(dense_impl(p));
  if (b.has_peers()) {
    impls.push_back(peer_impl("pytorch HF loop", "hf_loop", "float32"));
    if (all_peers) {
      impls.push_back(peer_impl("pytorch sort/gather", "grouped", "float32"));
      impls.push_back(peer_impl("pytorch padded bmm", "padded_bmm", "float32"));
    }
    impls.push_back(peer_impl("pytorch dense", "dense", "float32"));
  }
  return impls;
}

std::string shape_name(const Problem& p) {
  std::ostringstream s;
  s << "T=" << p.T << " D=" << p.D << " F=" << p.F << " E=" << p.E << " k=" << p.k;
  return s.str();
}

int section_shapes(Bench& b, const std::string& title, const std::vector<Problem>& problems) {
  int failed = 0;
  for (const auto& p : problems) {
    b.out() << "\n[" << title << "] " << shape_name(p) << ", SwiGLU experts, fp32\n";
    std::vector<Impl> impls = standard_impls(b, p, /*with_loop=*/title == "main", /*all_peers=*/title == "main");
    Samples s = b.measure(p, impls, {"fwd", "fwdbwd"}, b.options().rounds, b.options().warmup);
    for (const std::string mode : {"fwdbwd", "fwd"})
      print_table(b, p, s, impls, mode, "dynamoe dense", "pytorch dense", "pytorch HF loop");
    failed += b.check(p, {{"dynamoe grouped", make_layer(p, "top_k", "grouped", "fp32")},
                          {"dynamoe loop", make_layer(p, "top_k", "loop", "fp32")}},
                      1e-5);
  }
  return failed;
}

/// Experts the problem's top-k routing sends at least one token to.
int64_t experts_touched(const Problem& p) {
  const at::Tensor picked = std::get<1>(at::topk(p.x.mm(p.wg.t()), p.k, /*dim=*/1));
  return std::get<0>(at::_unique(picked.flatten())).numel();
}

/// Read bandwidth (bytes/s) of summing a buffer of `bytes` fp32 values, the best of `reps`
/// passes after one untimed pass (the buffer is in memory, not in the page tables' future).
double read_bandwidth(int64_t bytes, int reps = 15) {
  const at::Tensor buf = torch::rand({std::max<int64_t>(1, bytes / 4)});
  (void)buf.sum().item<float>();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) best = std::min(best, time_call([&] { (void)buf.sum().item<float>(); }));
  return double(buf.numel()) * 4.0 / best;
}

int section_decode(Bench& b) {
  b.out() << "\n[decode] D=512 F=1024 E=8 k=2, fp32 forward, whole layer incl. routing; microseconds per layer\n"
          << "  bound: the active experts' weights (3 x D x F fp32 each) over the read bandwidth measured on a\n"
          << "  buffer of that size in this run; a decode step cannot beat streaming them from memory once\n";
  char row[160];
  std::snprintf(row, sizeof row, "  %-26s %14s %14s\n", "implementation", "T=1", "T=32");
  b.out() << row;
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> us;
  std::map<int64_t, std::string> bound_text;
  std::map<int64_t, double> bound_us;
  std::vector<std::string> names;
  for (int64_t T : {1, 32}) {
    Problem p = make_problem("decode" + std::to_string(T), T, 512, 1024, 8, 2);
    const int64_t touched = experts_touched(p), bytes = touched * 3 * p.D * p.F * 4;
    const double bw = read_bandwidth(bytes);
    bound_us[T] = double(bytes) / bw * 1e6;
    bound_text[T] = fmt("%.0f", bound_us[T]) + " us: " + std::to_string(touched) + " experts, " +
                    fmt("%.1f", double(bytes) / 1e6) + " MB at " + fmt("%.1f", bw / 1e9) + " GB/s";
    std::vector<Impl> impls = {dynamoe_impl("dynamoe grouped", p, make_layer(p, "top_k", "grouped", "fp32")),
                               dynamoe_impl("dynamoe loop", p, make_layer(p, "top_k", "loop", "fp32"))};
    if (b.has_peers()) impls.push_back(peer_impl("pytorch HF loop", "hf_loop", "float32"));
    Samples s = b.measure(p, impls, {"fwd"}, b.options().rounds, b.options().warmup, /*reps_per_round=*/25);
    names.clear();
    for (const auto& im : impls) {
      names.push_back(im.name);
      us[im.name][T] = {s.med(im.name + "/fwd") * 1e6, s.min(im.name + "/fwd") * 1e6};
    }
  }
  for (const auto& n : names) {
    std::snprintf(row, sizeof row, "  %-26s %14s %14s\n", n.c_str(),
                  (fmt("%.0f", us[n][1].first) + " (" + fmt("%.0f", us[n][1].second) + ")").c_str(),
                  (fmt("%.0f", us[n][32].first) + " (" + fmt("%.0f", us[n][32].second) + ")").c_str());
    b.out() << row;
  }
  for (const auto& n : names) {
    std::snprintf(row, sizeof row, "  %-26s %14s %14s\n", (n + " / bound").c_str(),
                  fmt("%.2f", us[n][1].first / bound_us[1]).c_str(), fmt("%.2f", us[n][32].first / bound_us[32]).c_str());
    b.out() << row;
  }
  b.out() << "  bound T=1: " << bound_text[1] << "\n  bound T=32: " << bound_text[32] << "\n";
  return 0;
}

int section_dynamic(Bench& b) {
  Problem p = make_problem("dynamic", b.options().tokens, 512, 1024, 8, 2);
  b.out() << "\n[dynamic] " << shape_name(p) << ", fp32 forward+backward: time follows the experts actually used\n";
  struct Variant {
    std::string name, router;
    double top_p;
  };
  const std::vector<Variant> variants = {{"top_k k=2", "top_k", 0}, {"top_p p=0.3", "top_p", 0.3},
                                         {"top_p p=0.6", "top_p", 0.6}, {"dynamoe tau=0.5", "dynamoe", 0}};
  std::vector<double> k_bar(variants.size());
  std::vector<Impl> impls;
  for (size_t i = 0; i < variants.size(); ++i)
    impls.push_back(dynamoe_impl(variants[i].name, p,
                                 make_layer(p, variants[i].router, "grouped", "fp32", variants[i].top_p), &k_bar[i]));
  Samples s = b.measure(p, impls, {"fwd", "fwdbwd"}, b.options().rounds, b.options().warmup);
  char row[200];
  std::snprintf(row, sizeof row, "  %-26s %8s %16s %12s %12s\n", "routing", "k_bar", "ms (min)", "time/top_k",
                "k_bar/k");
  b.out() << row;
  const double base = s.med(impls[0].name + "/fwdbwd");
  for (size_t i = 0; i < variants.size(); ++i) {
    const double t = s.med(impls[i].name + "/fwdbwd");
    std::snprintf(row, sizeof row, "  %-26s %8.2f %8.1f (%5.1f) %12.2f %12.2f\n", variants[i].name.c_str(), k_bar[i],
                  t * 1e3, s.min(impls[i].name + "/fwdbwd") * 1e3, t / base, k_bar[i] / 2.0);
    b.out() << row;
  }
  return 0;
}

int section_skew(Bench& b) {
  int failed = 0;
  for (double skew : {0.0, 4.0}) {
    Problem p = make_problem(skew > 0 ? "skew4" : "skew0", b.options().tokens, 512, 1024, 8, 2, skew);
    moe::MoELayer probe = make_layer(p, "top_k", "grouped", "fp32");
    torch::NoGradGuard ng;
    auto st = probe->forward(p.x).stats;
    std::ostringstream load;
    for (auto n : st.expert_tokens) load << n << " ";
    b.out() << "\n[skew " << skew << "] " << shape_name(p) << ", fp32; tokens per expert: " << load.str() << "\n";
    at::AutoGradMode grad(true);
    std::vector<Impl> impls = {dynamoe_impl("dynamoe grouped", p, make_layer(p, "top_k", "grouped", "fp32")),
                               dense_impl(p)};
    if (b.has_peers()) {
      impls.push_back(peer_impl("pytorch HF loop", "hf_loop", "float32"));
      impls.push_back(peer_impl("pytorch dense", "dense", "float32"));
    }
    Samples s = b.measure(p, impls, {"fwdbwd"}, std::max(3, b.options().rounds / 2), 1);
    print_table(b, p, s, impls, "fwdbwd", "dynamoe dense", "pytorch dense", "pytorch HF loop");
    if (skew > 0) failed += b.check(p, {{"dynamoe grouped", make_layer(p, "top_k", "grouped", "fp32")}}, 1e-5);
  }
  return failed;
}

int section_bf16(Bench& b) {
  Problem p = make_problem("bf16", b.options().tokens, 512, 1024, 8, 2);
  b.out() << "\n[bf16] " << shape_name(p) << ": bf16 expert GEMMs (fp32 masters and router) vs fp32; bf16 GEMM "
          << moe::bf16_gemm_backend() << "\n";
  std::vector<Impl> impls = {dynamoe_impl("dynamoe grouped bf16", p, make_layer(p, "top_k", "grouped", "bf16")),
                             dynamoe_impl("dynamoe grouped fp32", p, make_layer(p, "top_k", "grouped", "fp32"))};
  Impl dense16 = dense_impl(p);
  dense16.name = "dynamoe dense fp32";
  impls.push_back(dense16);
  // PyTorch's bf16 matmul: timed only where it is fast enough to finish (oneDNN on AVX512/AMX)
  bool peer_bf16 = false;
  if (b.has_peers()) {
    const double t =
        median(b.peer().call({{"cmd", "time"}, {"impl", "calib"}, {"dtype", "bfloat16"}, {"mode", "fwd"}, {"reps", 2}})
                   ["seconds"]
                       .get<std::vector<double>>());
    const double gflops = 2.0 * 1024 * 1024 * 1024 / t / 1e9;
    peer_bf16 = gflops > 100;
    b.out() << "  PyTorch bf16 1024^3 matmul here: " << fmt("%.1f", gflops) << " GFLOP/s"
            << (peer_bf16 ? "" : " (no native bf16 on this CPU: bf16 peers skipped, a layer would take minutes)")
            << "\n";
    if (peer_bf16) {
      impls.push_back(peer_impl("pytorch HF loop bf16", "hf_loop", "bfloat16"));
      impls.push_back(peer_impl("pytorch dense bf16", "dense", "bfloat16"));
    }
  }
  Samples s = b.measure(p, impls, {"fwd", "fwdbwd"}, b.options().rounds, b.options().warmup);
  for (const std::string mode : {"fwdbwd", "fwd"})
    print_table(b, p, s, impls, mode, "dynamoe dense fp32", "pytorch dense bf16", "pytorch HF loop bf16");
  const double ratio = s.med("dynamoe grouped fp32/fwdbwd") / s.med("dynamoe grouped bf16/fwdbwd");
  b.out() << "  bf16 throughput / fp32 throughput (fwd+bwd): " << fmt("%.2f", ratio) << "\n";
  return b.check(p, {{"dynamoe grouped bf16", make_layer(p, "top_k", "grouped", "bf16")}}, 2e-2);
}

}  // namespace

int run_moe_bench(const BenchOptions& o, std::ostream& out) {
  at::set_num_threads(o.threads);
  Bench b(o, out);
  b.header();
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t T = o.tokens;
  int failed = 0;
  for (const auto& sec : o.sections) {
    if (sec == "main")
      failed += section_shapes(b, "main", {make_problem("main1024", T, 512, 1024, 8, 2),
                                           make_problem("main2048", T, 512, 2048, 8, 2)});
    else if (sec == "fine")
      failed += section_shapes(b, "fine", {make_problem("fine32", T, 512, 512, 32, 4),
                                           make_problem("fine64", T, 512, 256, 64, 8)});
    else if (sec == "decode")
      failed += section_decode(b);
    else if (sec == "dynamic")
      failed += section_dynamic(b);
    else if (sec == "skew")
      failed += section_skew(b);
    else if (sec == "bf16")
      failed += section_bf16(b);
    else
      throw ConfigError(str("bench: unknown section '", sec, "' (valid: main, fine, decode, dynamic, skew, bf16)"));
    out.flush();
  }
  out << "\nbench finished in " << fmt("%.0f", seconds_since(t0)) << " s; correctness checks failed: " << failed
      << "\n";
  return failed;
}

}  // namespace dynamoe::bench
