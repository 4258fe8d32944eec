#pragma once
// Row kernels behind dispatch and combine: gathers and per-token sums over an assignment plan,
// parallel over rows, with any mix of float32, float64 and bfloat16 (sums accumulate in at least
// float32). Shape legend: N tokens, A assignments, D width. All index tensors are int64, contiguous.
#include <ATen/core/Tensor.h>

namespace dynamoe::moe::kernels {

/// out[a] = src[index[a]] (cast to out's dtype): [N, D] -> [A, D].
void gather_rows(const at::Tensor& src, const at::Tensor& index, at::Tensor& out);

/// out[t] = sum over j in [offsets[t], offsets[t+1]) of w[rows[j]] * src[rows[j]]  (w optional: 1).
/// src [A, D], rows [A], offsets [N + 1], w [A] or undefined, out [N, D] (overwritten).
void sum_rows(const at::Tensor& src, const at::Tensor& rows, const at::Tensor& offsets, const at::Tensor& w,
              at::Tensor& out);

/// Combine's backward: grad_src[a] = w[a] * grad_out[index[a]] and grad_w[a] = <grad_out[index[a]], src[a]>.
/// grad_out [N, D], src [A, D], w [A]; grad_src [A, D] in src's dtype, grad_w [A] in w's dtype.
void scale_rows_and_dot(const at::Tensor& grad_out, const at::Tensor& index, const at::Tensor& src,
                        const at::Tensor& w, at::Tensor& grad_src, at::Tensor& grad_w);

}  // namespace dynamoe::moe::kernels

namespace dynamoe::moe::kernels {

/// out (+)= a @ w^T for a few rows: a [n, K] and w [M, K] contiguous float32, out [n, M] with
/// contiguous rows. Streams each row of w once for all n rows of a (BLAS re-packs w for every
/// call, which dominates at decode sizes); AVX2/FMA when the CPU has it. Meant for n <= 8.
void skinny_gemm_nt(const at::Tensor& a, const at::Tensor& w, at::Tensor& out, bool accumulate);

}  // namespace dynamoe::moe::kernels
