#include "dynamoe/dist/process_group.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace dynamoe::dist {
namespace {

using std::chrono::milliseconds;

milliseconds to_ms(double seconds) { return milliseconds(static_cast<int64_t>(seconds * 1000.0)); }

std::string first_line_of(const std::string& s) {
  const size_t nl = s.find('\n');
  std::string line = nl == std::string::npos ? s : s.substr(0, nl);
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

std::string heartbeat_key(int rank) { return str("dynamoe/heartbeat/", rank); }

}  // namespace

struct ProcessGroup::Impl {
  LaunchEnv env;                        ///< rank and world of this group (a subgroup: positions)
  std::vector<int> world_ranks;         ///< a subgroup's members as ranks of the run
  Impl* parent = nullptr;               ///< a subgroup's run group (it owns the heartbeat)
  ProcessGroup::Traffic traffic;
  GroupOptions opts;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  // The heartbeat has its own store client (a store client is not shared between threads).
  c10::intrusive_ptr<c10d::TCPStore> beat_store;
  std::mutex beat_mutex;        // guards stopping (with beat_cv)
  std::mutex beat_store_mutex;  // guards beat_store
  std::condition_variable beat_cv;
  bool stopping = false;
  std::thread beat_thread;

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(beat_mutex);
      stopping = true;
    }
    beat_cv.notify_all();
    if (beat_thread.joinable()) beat_thread.join();
  }

  void heartbeat() {
    std::unique_lock<std::mutex> lock(beat_mutex);
    while (!stopping) {
      try {
        std::lock_guard<std::mutex> store_lock(beat_store_mutex);
        beat_store->add(heartbeat_key(env.rank), 1);
      } catch (const std::exception&) {
        return;  // the store (rank 0) is gone: a collective will say so
      }
      beat_cv.wait_for(lock, milliseconds(500));
    }
  }

  /// The ranks other than this one whose heartbeat stopped; {0} when the store itself (served by
  /// rank 0) cannot be reached.
  std::vector<int> silent_ranks() {
    auto read = [&] {
      std::lock_guard<std::mutex> store_lock(beat_store_mutex);
      std::vector<int64_t> v(env.world, 0);
      for (int r = 0; r < env.world; ++r) v[r] = beat_store->add(heartbeat_key(r), 0);
      return v;
    };
    try {
      const std::vector<int64_t> before = read();
      std::this_thread::sleep_for(milliseconds(2500));
      const std::vector<int64_t> after = read();
      std::vector<int> silent;
      for (int r = 0; r < env.world; ++r)
        if (r != env.rank && after[r] == before[r]) silent.push_back(r);
      return silent;
    } catch (const std::exception&) {
      return env.rank == 0 ? std::vector<int>{} : std::vector<int>{0};
    }
  }

  /// Runs one collective; a failure becomes PeerLost naming the silent ranks.
  template <typename F>
  void run(const char* what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      const std::vector<int> silent = parent ? parent->silent_ranks() : silent_ranks();
      std::string who;
      for (int r : silent) who += (who.empty() ? "" : ", ") + std::to_string(r);
      const std::string cause = first_line_of(e.what());
      if (silent.empty())
        throw PeerLost(str(what, " failed: ", cause, " (every other rank still answers: one is stuck in a "
                           "different step, or exited after its own error)"));
      throw PeerLost(str("lost rank", silent.size() > 1 ? "s " : " ", who, " during ", what, ": it stopped "
                         "answering (exited, was killed, or hangs; dist.timeout_s = ", opts.timeout_s, "): ", cause));
    }
  }
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::join(const LaunchEnv& env, const GroupOptions& opts) {
  if (!(opts.timeout_s > 0)) throw ConfigError(str("dist.timeout_s = ", opts.timeout_s, " must be > 0"));
  if (!(opts.connect_timeout_s > 0))
    throw ConfigError(str("dist.connect_timeout_s = ", opts.connect_timeout_s, " must be > 0"));
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->opts = opts;
  const std::string where = str(env.master_addr, ":", env.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world;
    so.waitWorkers = true;
    so.timeout = to_ms(opts.connect_timeout_s);
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    c10d::TCPStoreOptions bo = so;
    bo.isServer = false;
    bo.numWorkers = c10::nullopt;
    bo.waitWorkers = false;
    bo.timeout = milliseconds(3000);
    impl->beat_store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, bo);
    auto go = c10d::ProcessGroupGloo::Options::create(to_ms(opts.timeout_s));
    // All ranks on this machine: loopback; across machines: the address this host's name resolves to.
    go->devices.push_back(env.local_world == env.world
                              ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                              : c10d::ProcessGroupGloo::createDefaultDevice());
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank, env.world, go);
  } catch (const std::exception& e) {
    throw PeerLost(str("could not join the run of ", env.world, " processes at ", where, " as rank ", env.rank,
                       " within dist.connect_timeout_s = ", opts.connect_timeout_s, ": ", first_line_of(e.what())));
  }
  Impl* raw = impl.get();
  impl->beat_thread = std::thread([raw] { raw->heartbeat(); });
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::size() const { return impl_->env.world; }
const GroupOptions& ProcessGroup::options() const { return impl_->opts; }

void ProcessGroup::allreduce_sum_(std::vector<at::Tensor>& tensors) {
  // Buckets: consecutive tensors of one dtype up to bucket_bytes (a larger tensor is its own).
  std::vector<std::vector<at::Tensor>> buckets;
  int64_t bytes = 0;
  for (const at::Tensor& t : tensors) {
    DYNAMOE_CHECK(t.is_contiguous(), "allreduce_sum_: tensors must be contiguous");
    if (t.numel() == 0) continue;
    const int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
    if (buckets.empty() || buckets.back().front().scalar_type() != t.scalar_type() ||
        bytes + b > impl_->opts.bucket_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(t);
    bytes += b;
  }
  const auto t0 = std::chrono::steady_clock::now();
  impl_->run("allreduce", [&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& bucket : buckets) works.push_back(impl_->pg->allreduce_coalesced(bucket));
    for (auto& w : works) w->wait();
  });
  Traffic& tr = impl_->traffic;
  tr.allreduce_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++tr.allreduces;
  for (const at::Tensor& t : tensors) tr.allreduce_bytes += t.numel() * static_cast<int64_t>(t.element_size());
}

void ProcessGroup::broadcast_(std::vector<at::Tensor>& tensors, int root) {
  impl_->run("broadcast", [&] {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (at::Tensor& t : tensors) {
      if (t.numel() == 0) continue;
      std::vector<at::Tensor> one{t};
      works.push_back(impl_->pg->broadcast(one, o));
    }
    for (auto& w : works) w->wait();
  });
}

at::Tensor ProcessGroup::alltoall(const at::Tensor& in, const std::vector<int64_t>& send_rows,
                                  const std::vector<int64_t>& recv_rows) {
  DYNAMOE_CHECK(static_cast<int>(send_rows.size()) == size() && static_cast<int>(recv_rows.size()) == size(),
                "alltoall: expected ", size(), " send and receive counts");
  int64_t total = 0;
  for (int64_t r : recv_rows) total += r;
  std::vector<int64_t> shape = in.sizes().vec();
  shape[0] = total;
  at::Tensor input = in.contiguous();
  at::Tensor out = at::empty(shape, in.options());
  const auto t0 = std::chrono::steady_clock::now();
  impl_->run("all-to-all", [&] {
    // alltoall_base moves from its count vectors: give it copies.
    std::vector<int64_t> out_counts = recv_rows, in_counts = send_rows;
    impl_->pg->alltoall_base(out, input, out_counts, in_counts)->wait();
  });
  Traffic& tr = impl_->traffic;
  tr.alltoall_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++tr.alltoalls;
  const int64_t row_bytes = in.size(0) > 0 ? input.numel() / in.size(0) * static_cast<int64_t>(in.element_size()) : 0;
  for (int q = 0; q < size(); ++q)
    if (q != rank()) tr.alltoall_bytes += send_rows[q] * row_bytes;
  return out;
}

std::vector<int64_t> ProcessGroup::alltoall_counts(const std::vector<int64_t>& send) {
  std::vector<int64_t> ones(size(), 1);
  at::Tensor in = at::tensor(send, at::kLong);
  at::Tensor out = alltoall(in, ones, ones);
  return std::vector<int64_t>(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + out.numel());
}

std::vector<std::string> ProcessGroup::gather_bytes(const std::string& bytes) {
  const int P = size();
  std::vector<int64_t> sizes(P, 0);
  sizes[0] = static_cast<int64_t>(bytes.size());
  const std::vector<int64_t> got = alltoall_counts(sizes);  // rank 0: every rank's size
  std::vector<int64_t> send(P, 0), recv(P, 0);
  send[0] = static_cast<int64_t>(bytes.size());
  if (rank() == 0) recv = got;
  at::Tensor in = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  if (!bytes.empty()) std::memcpy(in.data_ptr(), bytes.data(), bytes.size());
  const at::Tensor out = alltoall(in, send, recv);
  std::vector<std::string> parts;
  if (rank() != 0) return parts;
  const char* p = static_cast<const char*>(out.data_ptr());
  for (int r = 0; r < P; ++r) {
    parts.emplace_back(p, static_cast<size_t>(recv[r]));
    p += recv[r];
  }
  return parts;
}

std::shared_ptr<ProcessGroup> ProcessGroup::subgroup(const std::vector<int>& ranks, const std::string& tag) {
  auto it = std::find(ranks.begin(), ranks.end(), rank());
  DYNAMOE_CHECK(it != ranks.end(), "subgroup '", tag, "': rank ", rank(), " is not one of its members");
  auto impl = std::make_unique<Impl>();
  impl->env = impl_->env;
  impl->env.rank = static_cast<int>(it - ranks.begin());
  impl->env.world = static_cast<int>(ranks.size());
  impl->opts = impl_->opts;
  impl->parent = impl_->parent ? impl_->parent : impl_.get();
  for (int r : ranks) impl->world_ranks.push_back(r);
  impl_->run("creating a process group", [&] {
    auto store = c10::make_intrusive<c10d::PrefixStore>("dynamoe/group/" + tag, impl_->store);
    auto go = c10d::ProcessGroupGloo::Options::create(to_ms(impl_->opts.timeout_s));
    go->devices.push_back(impl_->env.local_world == impl_->env.world
                              ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                              : c10d::ProcessGroupGloo::createDefaultDevice());
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, impl->env.rank, impl->env.world, go);
  });
  impl->store = impl_->store;
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

ProcessGroup::Traffic ProcessGroup::traffic() const { return impl_->traffic; }
void ProcessGroup::reset_traffic() { impl_->traffic = Traffic(); }

void ProcessGroup::barrier() {
  impl_->run("barrier", [&] { impl_->pg->barrier()->wait(); });
}

namespace {
std::shared_ptr<ProcessGroup>& world_slot() {
  static std::shared_ptr<ProcessGroup> g;
  return g;
}
}  // namespace

ProcessGroup* world_group() { return world_slot().get(); }
void set_world_group(std::shared_ptr<ProcessGroup> group) { world_slot() = std::move(group); }

namespace {
std::shared_ptr<ProcessGroup>& expert_slot() {
  static std::shared_ptr<ProcessGroup> g;
  return g;
}
std::shared_ptr<ProcessGroup>& expert_data_slot() {
  static std::shared_ptr<ProcessGroup> g;
  return g;
}
}  // namespace

ProcessGroup* expert_group() { return expert_slot().get(); }
ProcessGroup* expert_data_group() { return expert_data_slot().get(); }

void set_expert_parallel(int P) {
  ProcessGroup* w = world_group();
  DYNAMOE_CHECK(w && P >= 1 && w->size() % P == 0, "internal: expert parallelism of ", P, " over ",
                w ? w->size() : 1, " processes");
  const int D = w->size() / P, r = w->rank();
  std::vector<int> experts, data;
  for (int q = 0; q < P; ++q) experts.push_back((r / P) * P + q);
  for (int d = 0; d < D; ++d) data.push_back(d * P + r % P);
  expert_slot() = w->subgroup(experts, str("experts-", r / P));
  expert_data_slot() = D > 1 ? w->subgroup(data, str("expert-data-", r % P)) : nullptr;
}

}  // namespace dynamoe::dist
