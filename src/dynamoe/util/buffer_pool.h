#pragma once
// BufferPool: reuse of large hot-path buffers across steps. A fresh 32 MB tensor costs
// ~10 ms of first-touch page faults here against ~0.6 ms for a reused one; LibTorch's CPU
// allocator does not cache, so the MoE layer asks this pool instead of at::empty.
//   at::Tensor h = pooled_empty({A, F}, at::kFloat);   // uninitialised, like at::empty
// A pooled buffer is handed out again only when nothing else references its storage (its
// tensors, views and autograd's saved copies are all gone), so reuse is always safe.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace dynamoe {

/// An uninitialised contiguous tensor, from the pool when a free buffer of the dtype fits.
/// Small requests (below 256 KiB) go straight to at::empty.
at::Tensor pooled_empty(at::IntArrayRef sizes, at::ScalarType dtype);

/// Bytes currently held by the pool (free and in use) and the number of buffers.
int64_t buffer_pool_bytes();
int64_t buffer_pool_buffers();
/// Drops every buffer not in use.
void buffer_pool_release();

}  // namespace dynamoe
