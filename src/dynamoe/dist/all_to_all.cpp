#include "dynamoe/dist/all_to_all.h"

#include <torch/torch.h>

#include "dynamoe/dist/process_group.h"

namespace dynamoe::dist {
namespace {

at::Tensor exchange(ProcessGroup& g, const at::Tensor& x, const std::vector<int64_t>& send,
                    const std::vector<int64_t>& recv) {
  if (x.scalar_type() == at::kBFloat16)
    return g.alltoall(x.contiguous().view(at::kShort), send, recv).view(at::kBFloat16);
  return g.alltoall(x, send, recv);
}

struct AllToAll : torch::autograd::Function<AllToAll> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, ProcessGroup* g,
                            const std::vector<int64_t>& send, const std::vector<int64_t>& recv) {
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(g);
    ctx->saved_data["send"] = send;
    ctx->saved_data["recv"] = recv;
    return exchange(*g, x, send, recv);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* g = reinterpret_cast<ProcessGroup*>(ctx->saved_data["group"].toInt());
    const std::vector<int64_t> send = ctx->saved_data["send"].toIntVector();
    const std::vector<int64_t> recv = ctx->saved_data["recv"].toIntVector();
    // The reverse exchange: what came from rank s goes back to it.
    return {exchange(*g, grads[0].contiguous(), recv, send), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor all_to_all(ProcessGroup& group, const at::Tensor& x, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) {
  return AllToAll::apply(x, &group, send_rows, recv_rows);
}

}  // namespace dynamoe::dist
