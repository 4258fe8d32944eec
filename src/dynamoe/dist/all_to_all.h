#pragma once
// The differentiable all-to-all of expert parallelism: rows grouped by destination go to their
// rank; the backward sends the gradients of the received rows back where they came from.
//   at::Tensor got = dist::all_to_all(group, xs, send_rows, recv_rows);  // [sum(recv_rows), D]
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace dynamoe::dist {

class ProcessGroup;

/// Rows [sum(send_rows), ...] of x, send_rows[q] of them for rank q in order, are exchanged;
/// returns [sum(recv_rows), ...] with recv_rows[s] rows from rank s in order. Differentiable
/// w.r.t. x. Any float dtype (bf16 travels as int16: Gloo has no bf16).
at::Tensor all_to_all(ProcessGroup& group, const at::Tensor& x, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows);

}  // namespace dynamoe::dist
