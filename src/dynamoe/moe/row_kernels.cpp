#include "dynamoe/moe/row_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "dynamoe/util/error.h"

namespace dynamoe::moe::kernels {
namespace {

/// Calls f(T{}) with T the C++ type of `t` (float, double or c10::BFloat16).
template <class F>
void with_type(at::ScalarType t, const char* what, F&& f) {
  switch (t) {
    case at::kFloat: f(float{}); break;
    case at::kDouble: f(double{}); break;
    case at::kBFloat16: f(c10::BFloat16{}); break;
    default: throw Error(dynamoe::str("MoE kernels: ", what, " must be float32, float64 or bfloat16, got ", t));
  }
}

/// The accumulation type of a sum of S and T values.
template <class S, class T>
using acc_t = std::conditional_t<std::is_same<S, double>::value || std::is_same<T, double>::value, double, float>;

/// Rows per parallel task so that each task touches at least ~32K elements.
int64_t grain(int64_t d) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(d, 1)); }

void check_rows(const at::Tensor& t, const char* name) {
  DYNAMOE_CHECK(t.dim() == 2 && t.is_contiguous(), "MoE kernels: ", name, " must be a contiguous 2-D tensor, got ",
                t.sizes());
}

}  // namespace

void gather_rows(const at::Tensor& src, const at::Tensor& index, at::Tensor& out) {
  check_rows(src, "src");
  check_rows(out, "out");
  const int64_t A = index.numel(), D = src.size(1);
  DYNAMOE_CHECK(out.size(0) == A && out.size(1) == D, "gather_rows: out ", out.sizes(), " for ", A, " rows of ", D);
  const int64_t* idx = index.data_ptr<int64_t>();
  with_type(src.scalar_type(), "src", [&](auto s) {
    using S = decltype(s);
    with_type(out.scalar_type(), "out", [&](auto o) {
      using T = decltype(o);
      const S* in = src.data_ptr<S>();
      T* dst = out.data_ptr<T>();
      at::parallel_for(0, A, grain(D), [&](int64_t b, int64_t e) {
        for (int64_t a = b; a < e; ++a) {
          const S* row = in + idx[a] * D;
          T* o_row = dst + a * D;
          if constexpr (std::is_same<S, T>::value) {
            std::copy(row, row + D, o_row);
          } else {
            for (int64_t j = 0; j < D; ++j) o_row[j] = static_cast<T>(static_cast<float>(row[j]));
          }
        }
      });
    });
  });
}

void sum_rows(const at::Tensor& src, const at::Tensor& rows, const at::Tensor& offsets, const at::Tensor& w,
              at::Tensor& out) {
  check_rows(src, "src");
  check_rows(out, "out");
  const int64_t N = out.size(0), D = out.size(1);
  DYNAMOE_CHECK(offsets.numel() == N + 1 && src.size(1) == D, "sum_rows: shapes out ", out.sizes(), ", src ",
                src.sizes(), ", offsets ", offsets.numel());
  const int64_t* row = rows.data_ptr<int64_t>();
  const int64_t* off = offsets.data_ptr<int64_t>();
  with_type(src.scalar_type(), "src", [&](auto s) {
    using S = decltype(s);
    with_type(out.scalar_type(), "out", [&](auto o) {
      using T = decltype(o);
      with_type(w.defined() ? w.scalar_type() : out.scalar_type(), "weight", [&](auto wv) {
        using W = decltype(wv);
        using Acc = acc_t<S, T>;
        const S* in = src.data_ptr<S>();
        const W* wp = w.defined() ? w.data_ptr<W>() : nullptr;
        T* dst = out.data_ptr<T>();
        at::parallel_for(0, N, grain(D), [&](int64_t b, int64_t e) {
          std::vector<Acc> acc(D);
          for (int64_t t = b; t < e; ++t) {
            std::fill(acc.begin(), acc.end(), Acc(0));
            for (int64_t j = off[t]; j < off[t + 1]; ++j) {
              const int64_t r = row[j];
              const Acc scale = wp ? static_cast<Acc>(wp[r]) : Acc(1);
              const S* in_row = in + r * D;
              Acc* a = acc.data();
              for (int64_t k = 0; k < D; ++k) a[k] += scale * static_cast<Acc>(in_row[k]);
            }
            T* o_row = dst + t * D;
            for (int64_t k = 0; k < D; ++k) o_row[k] = static_cast<T>(acc[k]);
          }
        });
      });
    });
  });
}

void scale_rows_and_dot(const at::Tensor& grad_out, const at::Tensor& index, const at::Tensor& src,
                        const at::Tensor& w, at::Tensor& grad_src, at::Tensor& grad_w) {
  check_rows(grad_out, "grad_out");
  check_rows(src, "src");
  check_rows(grad_src, "grad_src");
  const int64_t A = src.size(0), D = src.size(1);
  DYNAMOE_CHECK(grad_out.size(1) == D && index.numel() == A && w.numel() == A && grad_w.numel() == A,
                "scale_rows_and_dot: shapes grad_out ", grad_out.sizes(), ", src ", src.sizes());
  const int64_t* idx = index.data_ptr<int64_t>();
  with_type(grad_out.scalar_type(), "grad_out", [&](auto g) {
    using G = decltype(g);
    with_type(src.scalar_type(), "src", [&](auto s) {
      using S = decltype(s);
      with_type(w.scalar_type(), "weight", [&](auto wv) {
        using W = decltype(wv);
        using Acc = acc_t<G, W>;
        const G* go = grad_out.data_ptr<G>();
        const S* in = src.data_ptr<S>();
        const W* wp = w.data_ptr<W>();
        S* gs = grad_src.data_ptr<S>();
        W* gw = grad_w.data_ptr<W>();
        at::parallel_for(0, A, grain(D), [&](int64_t b, int64_t e) {
          for (int64_t a = b; a < e; ++a) {
            const G* g_row = go + idx[a] * D;
            const S* s_row = in + a * D;
            S* gs_row = gs + a * D;
            const Acc scale = static_cast<Acc>(wp[a]);
            Acc dot = 0;
            for (int64_t k = 0; k < D; ++k) {
              const Acc gk = static_cast<Acc>(g_row[k]);
              dot += gk * static_cast<Acc>(s_row[k]);
              gs_row[k] = static_cast<S>(scale * gk);
            }
            gw[a] = static_cast<W>(dot);
          }
        });
      });
    });
  });
}

}  // namespace dynamoe::moe::kernels

#include <immintrin.h>

namespace dynamoe::moe::kernels {
namespace {

/// dot products of up to 8 rows of a with one row of w.
__attribute__((target("avx2,fma"))) void dots_avx2(const float* a, int64_t n, int64_t K, const float* w, float* dst,
                                                   int64_t ld_dst) {
  for (int64_t i = 0; i < n; ++i) {
    const float* ai = a + i * K;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= K; d += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(ai + d), _mm256_loadu_ps(w + d), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(ai + d + 8), _mm256_loadu_ps(w + d + 8), acc1);
    }
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    float sum = _mm_cvtss_f32(s);
    for (; d < K; ++d) sum += ai[d] * w[d];
    dst[i * ld_dst] += sum;
  }
}

void dots_plain(const float* a, int64_t n, int64_t K, const float* w, float* dst, int64_t ld_dst) {
  for (int64_t i = 0; i < n; ++i) {
    const float* ai = a + i * K;
    float sum = 0;
    for (int64_t d = 0; d < K; ++d) sum += ai[d] * w[d];
    dst[i * ld_dst] += sum;
  }
}

}  // namespace

void skinny_gemm_nt(const at::Tensor& a, const at::Tensor& w, at::Tensor& out, bool accumulate) {
  DYNAMOE_CHECK(a.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat &&
                    a.is_contiguous() && w.is_contiguous() && out.stride(1) == 1,
                "skinny_gemm_nt: expected contiguous float32 a, w and out rows");
  const int64_t n = a.size(0), K = a.size(1), M = w.size(0), ld = out.stride(0);
  DYNAMOE_CHECK(w.size(1) == K && out.size(0) == n && out.size(1) == M, "skinny_gemm_nt: shapes a ", a.sizes(),
                ", w ", w.sizes(), ", out ", out.sizes());
  if (!accumulate) out.zero_();
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const float* ap = a.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, M, std::max<int64_t>(64, 65536 / std::max<int64_t>(K, 1)), [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) (avx2 ? dots_avx2 : dots_plain)(ap, n, K, wp + j * K, op + j, ld);
  });
}

}  // namespace dynamoe::moe::kernels
