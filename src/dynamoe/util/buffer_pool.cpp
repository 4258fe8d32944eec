#include "dynamoe/util/buffer_pool.h"

#include <ATen/ATen.h>

#include <mutex>
#include <vector>

namespace dynamoe {
namespace {

constexpr int64_t kMinBytes = 256 << 10;     // smaller buffers are cheap to allocate
constexpr int64_t kMaxPoolBytes = int64_t(3) << 30;  // beyond this, free buffers are dropped

struct Pool {
  std::mutex mu;
  std::vector<at::Tensor> buffers;  // 1-D, one per storage
  int64_t bytes = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: tensors may outlive static destruction order
  return *p;
}

bool in_use(const at::Tensor& b) { return b.storage().use_count() > 1; }

/// Forgets the buffers nothing else references (the caller holds p.mu).
void drop_free(Pool& p) {
  std::vector<at::Tensor> kept;
  int64_t kept_bytes = 0;
  for (auto& b : p.buffers)
    if (in_use(b)) {
      kept_bytes += static_cast<int64_t>(b.nbytes());
      kept.push_back(std::move(b));
    }
  p.buffers = std::move(kept);
  p.bytes = kept_bytes;
}

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, at::ScalarType dtype) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
  if (bytes < kMinBytes) return at::empty(sizes, at::TensorOptions().dtype(dtype));
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  // best fit among free buffers of this dtype, at most twice the size asked for
  int best = -1;
  for (size_t i = 0; i < p.buffers.size(); ++i) {
    const at::Tensor& b = p.buffers[i];
    if (b.scalar_type() != dtype || b.numel() < numel || b.numel() > 2 * numel || in_use(b)) continue;
    if (best < 0 || b.numel() < p.buffers[best].numel()) best = static_cast<int>(i);
  }
  if (best >= 0) return p.buffers[best].narrow(0, 0, numel).view(sizes);
  if (p.bytes + bytes > kMaxPoolBytes) drop_free(p);
  at::Tensor b = at::empty({numel}, at::TensorOptions().dtype(dtype));
  if (p.bytes + bytes <= kMaxPoolBytes) {
    p.buffers.push_back(b);
    p.bytes += bytes;
  }
  return b.view(sizes);
}

int64_t buffer_pool_bytes() {
  std::lock_guard<std::mutex> lock(pool().mu);
  return pool().bytes;
}

int64_t buffer_pool_buffers() {
  std::lock_guard<std::mutex> lock(pool().mu);
  return static_cast<int64_t>(pool().buffers.size());
}

void buffer_pool_release() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  drop_free(p);
}

}  // namespace dynamoe
