// Native float32 kernels for tsdpo (the contract is src/backend/contract.ts, the definition src/backend/js/kernels.ts).
//
// Threads: OpenMP. When OpenBLAS is its OpenMP build (see scripts/native-config.js) the BLAS and these kernels share
// one pool, so nothing spins against anything on a 2-core machine. Work is split into contiguous row (or column)
// ranges, and every output element is computed by one thread in one fixed order, so our kernels give the same bits
// on any thread count. (OpenBLAS does not: it blocks differently per thread count. Runs are bit-reproducible at a
// fixed thread count.)
//
// SIMD: the loops in simd_kernels.inc are plain C++ written to auto-vectorise (`omp simd`, no calls in the loop
// bodies). They are compiled three times, for AVX-512 ("x86-64-v4"), AVX2+FMA ("x86-64-v3") and the baseline
// (SSE2), each copy in its own namespace, and g_simd points at the table of the widest copy the CPU supports,
// chosen from CPUID when the addon loads. AVX-512 code is never called on a CPU without it, and the copies share no
// inline function the linker could mix up. set_simd() (TSDPO_SIMD) selects a narrower copy, so tests check every
// copy the machine can run.
//
// Precision: reductions that the TypeScript reference carries in double (sums of squares, softmax and log-softmax
// normalisers, dot products of RMSNorm backward, AdamW's update) are carried in double here too; elementwise maths
// is float32; exp is our own vectorisable float32 exp (≤ 2 ulp over the range that matters, see exp_f32).

#include "kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
// OpenBLAS extensions (declared by OpenBLAS's cblas.h; repeated so a generic cblas.h still compiles and fails at
// link time with a clear "undefined reference" rather than at run time).
void openblas_set_num_threads(int num_threads);
int openblas_get_parallel(void);
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

// Per-instruction-set copies need GCC's `#pragma GCC target`; elsewhere only the baseline copy is built.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TSDPO_X86_DISPATCH 1
#else
#define TSDPO_X86_DISPATCH 0
#endif
#define ALWAYS_INLINE inline __attribute__((always_inline))

namespace tsdpo {
namespace {

int g_threads = 1;

// Below this many elements of work a kernel stays on the calling thread: waking the pool costs ~1-5 µs.
constexpr i64 kGrain = 1 << 14;

// Calls f(lo, hi) on contiguous, disjoint ranges covering [0, n), one per thread.
template <class F>
void parallel_ranges(i64 n, i64 work, F&& f) {
  int nt = g_threads;
  if (nt > n) nt = static_cast<int>(n);
  if (nt <= 1 || work < kGrain) {
    if (n > 0) f(i64{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const i64 id = omp_get_thread_num(), k = omp_get_num_threads();
    const i64 lo = n * id / k, hi = n * (id + 1) / k;
    if (lo < hi) f(lo, hi);
  }
}

// The range kernels, compiled once per instruction set (see simd_kernels.inc) and called through g_simd.
#if TSDPO_X86_DISPATCH
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace avx512 {
#include "simd_kernels.inc"
}  // namespace avx512
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
namespace avx2 {
#include "simd_kernels.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif
namespace baseline {
#include "simd_kernels.inc"
}  // namespace baseline

#define TSDPO_SIMD_FUNCTIONS(X, ns) \
  X(ns, embedding_backward_cols) X(ns, rmsnorm_forward_rows) X(ns, rmsnorm_backward_rows) \
  X(ns, rmsnorm_dweight_cols) X(ns, column_sums) X(ns, rope_rows) X(ns, softmax_causal_row) \
  X(ns, softmax_backward_row) X(ns, dot_f32) X(ns, axpy_f32) X(ns, swiglu_forward_range) \
  X(ns, swiglu_backward_range) X(ns, add_range) X(ns, accumulate_range) X(ns, logprob_forward_rows) \
  X(ns, logprob_backward_rows) X(ns, adamw_range)

struct SimdTable {
  const char* name;
#define TSDPO_MEMBER(ns, f) decltype(&ns::f) f;
  TSDPO_SIMD_FUNCTIONS(TSDPO_MEMBER, baseline)
#undef TSDPO_MEMBER
};

#define TSDPO_ENTRY(ns, f) ns::f,
const SimdTable kBaseline = {"baseline", TSDPO_SIMD_FUNCTIONS(TSDPO_ENTRY, baseline)};
#if TSDPO_X86_DISPATCH
const SimdTable kAvx2 = {"avx2", TSDPO_SIMD_FUNCTIONS(TSDPO_ENTRY, avx2)};
const SimdTable kAvx512 = {"avx512", TSDPO_SIMD_FUNCTIONS(TSDPO_ENTRY, avx512)};
#endif
#undef TSDPO_ENTRY

// The widest table this CPU (and its OS, which must save the wider registers) supports at `level` or below.
const SimdTable* simd_table(const char* level) {
  const std::string want = level;
#if TSDPO_X86_DISPATCH
  __builtin_cpu_init();
  if (want == "avx512") return __builtin_cpu_supports("x86-64-v4") ? &kAvx512 : nullptr;
  if (want == "avx2") return __builtin_cpu_supports("x86-64-v3") ? &kAvx2 : nullptr;
#endif
  if (want == "baseline") return &kBaseline;
  return nullptr;
}

const SimdTable* best_simd_table() {
  for (const char* level : {"avx512", "avx2", "baseline"})
    if (const SimdTable* t = simd_table(level)) return t;
  return &kBaseline;
}

const SimdTable* g_simd = best_simd_table();


// ---------------------------------------------------------------------------------------------------------------
// BLAS inside our parallel regions. Attention runs one (row, head) task per thread with a single-threaded BLAS call
// inside. OpenBLAS's OpenMP build does that by itself (it sees omp_in_parallel()); its pthreads build must be told
// to use one thread for the duration, or every task would queue on its pool; the sequential build needs nothing.
// (openblas_set_num_threads must not be used for this with the OpenMP build: there it is omp_set_num_threads.)
class SerialBlasScope {
 public:
  SerialBlasScope() : active_(openblas_get_parallel() == 1 && g_threads > 1) {
    if (active_) openblas_set_num_threads(1);
  }
  ~SerialBlasScope() {
    if (active_) openblas_set_num_threads(g_threads);
  }
  SerialBlasScope(const SerialBlasScope&) = delete;
  SerialBlasScope& operator=(const SerialBlasScope&) = delete;

 private:
  bool active_;
};

// Per-thread scratch that grows to the largest size asked for and is then reused (no allocation per step).
float* thread_scratch(i64 n) {
  thread_local std::vector<float> buf;
  if (static_cast<i64>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// Query rows are processed in blocks of kBlock: block [m, m+mb) only needs keys [kstart, m+mb), so the masked upper
// triangle is skipped except inside the diagonal block (about 60% of the full square's work at T = 256).
constexpr i64 kBlock = 64;

inline i64 first_key(i64 t, i64 window) { return window > 0 ? std::max<i64>(0, t - window + 1) : 0; }

void sgemm(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda, const float* B, i64 ldb,
           float beta, float* C, i64 ldc) {
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Runtime information

int set_threads(int n) {
  if (n < 1) n = 1;
  g_threads = n;
  omp_set_num_threads(n);
  // OpenMP build: the same call as above. pthreads build: sizes its own pool (it only runs while ours sleeps).
  openblas_set_num_threads(n);
  return g_threads;
}

int get_threads() { return g_threads; }
int blas_parallel_mode() { return openblas_get_parallel(); }
const char* blas_core_name() { return openblas_get_corename(); }
const char* blas_config() { return openblas_get_config(); }

const char* simd_level() { return g_simd->name; }

bool set_simd(const char* level) {
  const SimdTable* t = simd_table(level);
  if (t) g_simd = t;
  return t != nullptr;
}

// ---------------------------------------------------------------------------------------------------------------
// Kernels

void embedding_forward(float* out, const int32_t* ids, const float* table, i64 N, i64 C) {
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; n++)
      std::memcpy(out + n * C, table + static_cast<i64>(ids[n]) * C, sizeof(float) * C);
  });
}

// Rows of dtable repeat when ids do, so threads split the columns, not the tokens.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, i64 N, i64 C) {
  parallel_ranges(C, N * C, [&](i64 c0, i64 c1) { g_simd->embedding_backward_cols(dtable, dout, ids, N, C, c0, c1); });
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, i64 N, i64 C, float eps) {
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) {
    g_simd->rmsnorm_forward_rows(out, rstd, inp, weight, n0, n1, C, eps);
  });
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, i64 N, i64 C) {
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) {
    g_simd->rmsnorm_backward_rows(dinp, dout, inp, weight, rstd, n0, n1, C);
  });
  if (dweight)
    parallel_ranges(C, N * C, [&](i64 c0, i64 c1) {
      g_simd->rmsnorm_dweight_cols(dweight, dout, inp, rstd, N, C, c0, c1);
    });
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, i64 N, i64 IC, i64 OC) {
  if (N == 0 || OC == 0) return;
  if (bias) {
    parallel_ranges(N, N * OC, [&](i64 n0, i64 n1) {
      for (i64 n = n0; n < n1; n++) std::memcpy(out + n * OC, bias, sizeof(float) * OC);
    });
  }
  if (IC == 0) {
    if (!bias) std::memset(out, 0, sizeof(float) * N * OC);
    return;
  }
  sgemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, bias ? 1.0f : 0.0f, out, OC);  // out (+)= inp · Wᵀ
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, i64 N, i64 IC, i64 OC) {
  if (N == 0 || OC == 0) return;
  if (IC > 0) {
    if (dinp) sgemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);     // dinp += dout · W
    if (dweight) sgemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);  // dW += doutᵀ · inp
  }
  if (dbias) parallel_ranges(OC, N * OC, [&](i64 c0, i64 c1) { g_simd->column_sums(dbias, dout, N, OC, c0, c1); });
}

void rope(float* x, const float* cos, const float* sin, i64 R, i64 T, i64 H, i64 HS, i64 pos0, float sign) {
  parallel_ranges(R * T, R * T * H * HS,
                  [&](i64 r0, i64 r1) { g_simd->rope_rows(x, cos, sin, r0, r1, T, H, HS, pos0, sign); });
}

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, i64 R, i64 T,
                       i64 NH, i64 NKV, i64 HS, i64 window) {
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HS)));
  const i64 group = NH / NKV, qStride = NH * HS, kvStride = NKV * HS;
  SerialBlasScope serial;
  parallel_ranges(R * NH, R * NH * T * T * HS, [&](i64 task0, i64 task1) {
    for (i64 task = task0; task < task1; task++) {
      const i64 r = task / NH, h = task % NH;
      const float* qh = q + r * T * qStride + h * HS;
      const float* kh = k + r * T * kvStride + (h / group) * HS;
      const float* vh = v + r * T * kvStride + (h / group) * HS;
      float* oh = out + r * T * qStride + h * HS;
      float* a = att + (r * NH + h) * T * T;
      for (i64 m = 0; m < T; m += kBlock) {
        const i64 mb = std::min(kBlock, T - m), ks = first_key(m, window), nk = m + mb - ks;
        // scores of queries m..m+mb−1 against keys ks..m+mb−1, straight into their place in att
        sgemm(false, true, mb, nk, HS, scale, qh + m * qStride, qStride, kh + ks * kvStride, kvStride, 0.0f,
              a + m * T + ks, T);
        for (i64 t = m; t < m + mb; t++) g_simd->softmax_causal_row(a + t * T, first_key(t, window), t, T);
        sgemm(false, false, mb, HS, nk, 1.0f, a + m * T + ks, T, vh + ks * kvStride, kvStride, 0.0f,
              oh + m * qStride, qStride);
      }
    }
  });
}

// One task per (row, KV head): the query heads that share a KV head all add into its dk and dv, so they run in the
// same task, in order, and no two threads ever write the same gradient element.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* att, i64 R, i64 T, i64 NH, i64 NKV, i64 HS, i64 window) {
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HS)));
  const i64 group = NH / NKV, qStride = NH * HS, kvStride = NKV * HS;
  SerialBlasScope serial;
  parallel_ranges(R * NKV, R * NH * T * T * HS, [&](i64 task0, i64 task1) {
    float* ds = thread_scratch(T * T);
    for (i64 task = task0; task < task1; task++) {
      const i64 r = task / NKV, kvh = task % NKV;
      const float* kh = k + r * T * kvStride + kvh * HS;
      const float* vh = v + r * T * kvStride + kvh * HS;
      float* dkh = dk + r * T * kvStride + kvh * HS;
      float* dvh = dv + r * T * kvStride + kvh * HS;
      for (i64 h = kvh * group; h < (kvh + 1) * group; h++) {
        const float* qh = q + r * T * qStride + h * HS;
        const float* doh = dout + r * T * qStride + h * HS;
        float* dqh = dq + r * T * qStride + h * HS;
        const float* p = att + (r * NH + h) * T * T;
        for (i64 m = 0; m < T; m += kBlock) {
          const i64 mb = std::min(kBlock, T - m), ks = first_key(m, window), nk = m + mb - ks;
          float* dsb = ds + m * T + ks;
          const float* pb = p + m * T + ks;
          // dp = dout · vᵀ, then ds = p ⊙ (dp − Σ p·dp) · scale in place
          sgemm(false, true, mb, nk, HS, 1.0f, doh + m * qStride, qStride, vh + ks * kvStride, kvStride, 0.0f, dsb, T);
          for (i64 t = m; t < m + mb; t++)
            g_simd->softmax_backward_row(ds + t * T, p + t * T, first_key(t, window), t, ks, m + mb, scale);
          sgemm(false, false, mb, HS, nk, 1.0f, dsb, T, kh + ks * kvStride, kvStride, 1.0f, dqh + m * qStride,
                qStride);  // dq += ds · k
          sgemm(true, false, nk, HS, mb, 1.0f, dsb, T, qh + m * qStride, qStride, 1.0f, dkh + ks * kvStride,
                kvStride);  // dk += dsᵀ · q
          sgemm(true, false, nk, HS, mb, 1.0f, pb, T, doh + m * qStride, qStride, 1.0f, dvh + ks * kvStride,
                kvStride);  // dv += pᵀ · dout
        }
      }
    }
  });
}

void attention_decode(float* out, const float* q, const float* kCache, const float* vCache, i64 T, i64 pos0, i64 NH,
                      i64 NKV, i64 HS, i64 window) {
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HS)));
  const i64 group = NH / NKV, qStride = NH * HS, kvStride = NKV * HS;
  parallel_ranges(T * NH, T * NH * (pos0 + T) * HS, [&](i64 task0, i64 task1) {
    float* s = thread_scratch(pos0 + T);
    for (i64 task = task0; task < task1; task++) {
      const i64 t = task / NH, h = task % NH, pos = pos0 + t, first = first_key(pos, window);
      const float* qh = q + t * qStride + h * HS;
      const i64 kvOff = (h / group) * HS;
      for (i64 j = first; j <= pos; j++) s[j] = scale * g_simd->dot_f32(qh, kCache + j * kvStride + kvOff, HS);
      g_simd->softmax_causal_row(s, first, pos, pos + 1);
      float* o = out + t * qStride + h * HS;
      std::memset(o, 0, sizeof(float) * HS);
      for (i64 j = first; j <= pos; j++) g_simd->axpy_f32(o, s[j], vCache + j * kvStride + kvOff, HS);
    }
  });
}

void swiglu_forward(float* out, const float* gate, const float* up, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->swiglu_forward_range(out, gate, up, i0, i1); });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->swiglu_backward_range(dgate, dup, dout, gate, up, i0, i1); });
}

void add_forward(float* out, const float* a, const float* b, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->add_range(out, a, b, i0, i1); });
}

void accumulate(float* dst, const float* src, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->accumulate_range(dst, src, i0, i1); });
}

void logprob_forward(float* logp, float* lse, float* logitSum, const float* logits, const int32_t* targets, i64 N,
                     i64 V) {
  parallel_ranges(N, N * V, [&](i64 n0, i64 n1) {
    g_simd->logprob_forward_rows(logp, lse, logitSum, logits, targets, n0, n1, V);
  });
}

void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                      const int32_t* targets, i64 N, i64 V) {
  parallel_ranges(N, N * V, [&](i64 n0, i64 n1) {
    g_simd->logprob_backward_rows(dlogits, dlogp, logits, lse, targets, n0, n1, V);
  });
}

void adamw_step(float* params, const float* grads, float* m, float* v, i64 n, double lr, double beta1, double beta2,
                double eps, double weightDecay, double step) {
  const double bc1 = 1 - std::pow(beta1, step), bc2 = 1 - std::pow(beta2, step);
  const double stepSize = lr / bc1, bc2Sqrt = std::sqrt(bc2), decay = 1 - lr * weightDecay;
  parallel_ranges(n, n, [&](i64 i0, i64 i1) {
    g_simd->adamw_range(params, grads, m, v, i0, i1, decay, beta1, beta2, stepSize, bc2Sqrt, eps);
  });
}

}  // namespace tsdpo
