// Native float32 kernels for tsdpo (the contract is src/backend/contract.ts, the definition src/backend/js/kernels.ts).
//
// Threads: OpenMP. When OpenBLAS is its OpenMP build (see scripts/native-config.js) the BLAS and these kernels share
// one pool, so nothing spins against anything on a 2-core machine. Work is split into contiguous row (or column)
// ranges with a fixed partition, and every output element is computed by one thread in one fixed order, so results
// are deterministic and do not depend on the thread count.
//
// SIMD: the loops are plain C++ written to auto-vectorise (`omp simd`, no calls in the loop bodies). Each hot
// range function is compiled three times by GCC's target_clones (AVX-512 "x86-64-v4", AVX2+FMA "x86-64-v3",
// baseline SSE2) and an ifunc resolver picks one when the addon loads, from CPUID. AVX-512 code therefore never runs
// on a CPU without it. Clones are separate symbols, so unlike per-ISA translation units no AVX-512 copy of an
// inline helper can be picked by the linker for baseline code.
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
#include <vector>

extern "C" {
// OpenBLAS extensions (declared by OpenBLAS's cblas.h; repeated so a generic cblas.h still compiles and fails at
// link time with a clear "undefined reference" rather than at run time).
void openblas_set_num_threads(int num_threads);
int openblas_get_parallel(void);
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SIMD_CLONES
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

// exp for float32, vectorisable: exp(x) = 2^n · e^r with n = round(x·log2 e) and |r| ≤ ln2/2, e^r by the Cephes
// expf polynomial (relative error ~1e-7). Inputs below −87.33 (where the result would be subnormal) give exactly 0,
// as exp(−∞) must for masked scores; inputs above 88 are clamped (results ≤ 1.7e38; callers only pass x ≤ 0 or use
// exp(−g) inside 1/(1+·), where the clamp is invisible). NaN propagates.
ALWAYS_INLINE float exp_f32(float x) {
  const float lo = -87.33f, hi = 88.0f;
  float xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  float n = xc * 1.44269504088896341f + 12582912.0f;  // 1.5·2^23: adding and subtracting it rounds to an integer
  n -= 12582912.0f;
  float r = xc - n * 0.693359375f;  // ln 2 split in two for an exact first step
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = e * scale;
  return x < lo ? 0.0f : y;
}

// ---------------------------------------------------------------------------------------------------------------
// Range kernels (SIMD clones). Each handles rows [n0, n1) (or columns [c0, c1)) of its kernel.

SIMD_CLONES void embedding_backward_cols(float* dtable, const float* dout, const int32_t* ids, i64 N, i64 C, i64 c0,
                                         i64 c1) {
  for (i64 n = 0; n < N; n++) {
    float* __restrict d = dtable + static_cast<i64>(ids[n]) * C;
    const float* __restrict s = dout + n * C;
#pragma omp simd
    for (i64 c = c0; c < c1; c++) d[c] += s[c];
  }
}

SIMD_CLONES void rmsnorm_forward_rows(float* out, float* rstd, const float* inp, const float* weight, i64 n0, i64 n1,
                                      i64 C, float eps) {
  for (i64 n = n0; n < n1; n++) {
    const float* __restrict x = inp + n * C;
    float* __restrict o = out + n * C;
    double ss = 0;  // products of two floats are exact in double, so only the summation order differs from js
#pragma omp simd reduction(+ : ss)
    for (i64 c = 0; c < C; c++) ss += static_cast<double>(x[c]) * x[c];
    rstd[n] = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
    const double r = rstd[n];  // the stored float value, as backward sees it
#pragma omp simd
    for (i64 c = 0; c < C; c++) o[c] = static_cast<float>(x[c] * r * weight[c]);
  }
}

// dx_j += r w_j dy_j − (r³/C) x_j Σ_c dy_c w_c x_c
SIMD_CLONES void rmsnorm_backward_rows(float* dinp, const float* dout, const float* inp, const float* weight,
                                       const float* rstd, i64 n0, i64 n1, i64 C) {
  for (i64 n = n0; n < n1; n++) {
    const float* __restrict x = inp + n * C;
    const float* __restrict dy = dout + n * C;
    float* __restrict dx = dinp + n * C;
    const double r = rstd[n];
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (i64 c = 0; c < C; c++) dot += static_cast<double>(dy[c]) * weight[c] * x[c];
    const float k = static_cast<float>(r * r * r * dot / static_cast<double>(C));
    const float rf = static_cast<float>(r);
#pragma omp simd
    for (i64 c = 0; c < C; c++) dx[c] += rf * weight[c] * dy[c] - k * x[c];
  }
}

SIMD_CLONES void rmsnorm_dweight_cols(float* dweight, const float* dout, const float* inp, const float* rstd, i64 N,
                                      i64 C, i64 c0, i64 c1) {
  for (i64 n = 0; n < N; n++) {
    const float* __restrict x = inp + n * C;
    const float* __restrict dy = dout + n * C;
    const float r = rstd[n];
#pragma omp simd
    for (i64 c = c0; c < c1; c++) dweight[c] += dy[c] * x[c] * r;
  }
}

SIMD_CLONES void column_sums(float* dbias, const float* dout, i64 N, i64 OC, i64 c0, i64 c1) {
  for (i64 n = 0; n < N; n++) {
    const float* __restrict g = dout + n * OC;
#pragma omp simd
    for (i64 c = c0; c < c1; c++) dbias[c] += g[c];
  }
}

SIMD_CLONES void rope_rows(float* x, const float* cos, const float* sin, i64 r0, i64 r1, i64 T, i64 H, i64 HS,
                           i64 pos0, float sign) {
  const i64 half = HS / 2;
  for (i64 row = r0; row < r1; row++) {
    const i64 pos = pos0 + row % T;
    const float* __restrict cs = cos + pos * half;
    const float* __restrict sn = sin + pos * half;
    for (i64 h = 0; h < H; h++) {
      float* __restrict a = x + (row * H + h) * HS;
      float* __restrict b = a + half;
#pragma omp simd
      for (i64 i = 0; i < half; i++) {
        const float c = cs[i], s = sign * sn[i], ai = a[i], bi = b[i];
        a[i] = ai * c - bi * s;
        b[i] = bi * c + ai * s;
      }
    }
  }
}

// row[first..last] := softmax(row[first..last]); every other entry of the T-long row := 0.
SIMD_CLONES void softmax_causal_row(float* row, i64 first, i64 last, i64 T) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (i64 j = first; j <= last; j++) mx = std::max(mx, row[j]);
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (i64 j = first; j <= last; j++) {
    const float e = exp_f32(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
#pragma omp simd
  for (i64 j = first; j <= last; j++) row[j] *= inv;
  for (i64 j = 0; j < first; j++) row[j] = 0;
  for (i64 j = last + 1; j < T; j++) row[j] = 0;
}

// ds[j] := p[j] (dp[j] − Σ_k p[k] dp[k]) · scale on [first, last]; 0 on [lo, first) and (last, hi).
SIMD_CLONES void softmax_backward_row(float* ds, const float* p, i64 first, i64 last, i64 lo, i64 hi, float scale) {
  double pdp = 0;
#pragma omp simd reduction(+ : pdp)
  for (i64 j = first; j <= last; j++) pdp += static_cast<double>(p[j]) * ds[j];
  const float c = static_cast<float>(pdp);
#pragma omp simd
  for (i64 j = first; j <= last; j++) ds[j] = p[j] * (ds[j] - c) * scale;
  for (i64 j = lo; j < first; j++) ds[j] = 0;
  for (i64 j = last + 1; j < hi; j++) ds[j] = 0;
}

SIMD_CLONES float dot_f32(const float* a, const float* b, i64 n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (i64 i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

SIMD_CLONES void axpy_f32(float* y, float a, const float* x, i64 n) {
#pragma omp simd
  for (i64 i = 0; i < n; i++) y[i] += a * x[i];
}

SIMD_CLONES void swiglu_forward_range(float* out, const float* gate, const float* up, i64 i0, i64 i1) {
  // out may alias gate or up (the contract allows it): no __restrict here.
#pragma omp simd
  for (i64 i = i0; i < i1; i++) {
    const float g = gate[i];
    out[i] = g / (1.0f + exp_f32(-g)) * up[i];
  }
}

// silu'(g) = σ(g) (1 + g (1 − σ(g)))
SIMD_CLONES void swiglu_backward_range(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                       i64 i0, i64 i1) {
#pragma omp simd
  for (i64 i = i0; i < i1; i++) {
    const float g = gate[i];
    const float sg = 1.0f / (1.0f + exp_f32(-g));
    dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
    dup[i] += dout[i] * g * sg;
  }
}

SIMD_CLONES void add_range(float* out, const float* a, const float* b, i64 i0, i64 i1) {
#pragma omp simd
  for (i64 i = i0; i < i1; i++) out[i] = a[i] + b[i];
}

SIMD_CLONES void accumulate_range(float* dst, const float* src, i64 i0, i64 i1) {
#pragma omp simd
  for (i64 i = i0; i < i1; i++) dst[i] += src[i];
}

SIMD_CLONES void logprob_forward_rows(float* logp, float* lse, float* logitSum, const float* logits,
                                      const int32_t* targets, i64 n0, i64 n1, i64 V) {
  for (i64 n = n0; n < n1; n++) {
    const float* __restrict x = logits + n * V;
    float mx = -INFINITY;
    double sum = 0;
#pragma omp simd reduction(max : mx) reduction(+ : sum)
    for (i64 v = 0; v < V; v++) {
      mx = std::max(mx, x[v]);
      sum += x[v];
    }
    double se = 0;
#pragma omp simd reduction(+ : se)
    for (i64 v = 0; v < V; v++) se += exp_f32(x[v] - mx);
    const double l = mx + std::log(se);
    lse[n] = static_cast<float>(l);
    logitSum[n] = static_cast<float>(sum);
    logp[n] = static_cast<float>(x[targets[n]] - l);
  }
}

SIMD_CLONES void logprob_backward_rows(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                                       const int32_t* targets, i64 n0, i64 n1, i64 V) {
  for (i64 n = n0; n < n1; n++) {
    float* __restrict d = dlogits + n * V;
    const float* __restrict x = logits + n * V;
    const float g = dlogp[n];
    if (g == 0) {
      std::memset(d, 0, sizeof(float) * V);
      continue;
    }
    const float l = lse[n], ng = -g;
#pragma omp simd
    for (i64 v = 0; v < V; v++) d[v] = ng * exp_f32(x[v] - l);
    d[targets[n]] += g;
  }
}

SIMD_CLONES void adamw_range(float* params, const float* grads, float* m, float* v, i64 i0, i64 i1, double decay,
                             double b1, double b2, double stepSize, double bc2Sqrt, double eps) {
#pragma omp simd
  for (i64 i = i0; i < i1; i++) {
    const double g = grads[i];
    const double p = params[i] * decay;  // torch: param.mul_(1 - lr * weight_decay)
    const float mi = static_cast<float>(b1 * m[i] + (1 - b1) * g);
    const float vi = static_cast<float>(b2 * v[i] + (1 - b2) * g * g);
    m[i] = mi;
    v[i] = vi;
    params[i] = static_cast<float>(p - stepSize * mi / (std::sqrt(static_cast<double>(vi)) / bc2Sqrt + eps));
  }
}

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

const char* simd_level() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
  return "baseline";
#else
  return "compiler-default";
#endif
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
  parallel_ranges(C, N * C, [&](i64 c0, i64 c1) { embedding_backward_cols(dtable, dout, ids, N, C, c0, c1); });
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, i64 N, i64 C, float eps) {
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) { rmsnorm_forward_rows(out, rstd, inp, weight, n0, n1, C, eps); });
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, i64 N, i64 C) {
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) { rmsnorm_backward_rows(dinp, dout, inp, weight, rstd, n0, n1, C); });
  if (dweight)
    parallel_ranges(C, N * C, [&](i64 c0, i64 c1) { rmsnorm_dweight_cols(dweight, dout, inp, rstd, N, C, c0, c1); });
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
  if (dbias) parallel_ranges(OC, N * OC, [&](i64 c0, i64 c1) { column_sums(dbias, dout, N, OC, c0, c1); });
}

void rope(float* x, const float* cos, const float* sin, i64 R, i64 T, i64 H, i64 HS, i64 pos0, float sign) {
  parallel_ranges(R * T, R * T * H * HS,
                  [&](i64 r0, i64 r1) { rope_rows(x, cos, sin, r0, r1, T, H, HS, pos0, sign); });
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
        for (i64 t = m; t < m + mb; t++) softmax_causal_row(a + t * T, first_key(t, window), t, T);
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
            softmax_backward_row(ds + t * T, p + t * T, first_key(t, window), t, ks, m + mb, scale);
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
      for (i64 j = first; j <= pos; j++) s[j] = scale * dot_f32(qh, kCache + j * kvStride + kvOff, HS);
      softmax_causal_row(s, first, pos, pos + 1);
      float* o = out + t * qStride + h * HS;
      std::memset(o, 0, sizeof(float) * HS);
      for (i64 j = first; j <= pos; j++) axpy_f32(o, s[j], vCache + j * kvStride + kvOff, HS);
    }
  });
}

void swiglu_forward(float* out, const float* gate, const float* up, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { swiglu_forward_range(out, gate, up, i0, i1); });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { swiglu_backward_range(dgate, dup, dout, gate, up, i0, i1); });
}

void add_forward(float* out, const float* a, const float* b, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { add_range(out, a, b, i0, i1); });
}

void accumulate(float* dst, const float* src, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { accumulate_range(dst, src, i0, i1); });
}

void logprob_forward(float* logp, float* lse, float* logitSum, const float* logits, const int32_t* targets, i64 N,
                     i64 V) {
  parallel_ranges(N, N * V,
                  [&](i64 n0, i64 n1) { logprob_forward_rows(logp, lse, logitSum, logits, targets, n0, n1, V); });
}

void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const float* lse,
                      const int32_t* targets, i64 N, i64 V) {
  parallel_ranges(N, N * V,
                  [&](i64 n0, i64 n1) { logprob_backward_rows(dlogits, dlogp, logits, lse, targets, n0, n1, V); });
}

void adamw_step(float* params, const float* grads, float* m, float* v, i64 n, double lr, double beta1, double beta2,
                double eps, double weightDecay, double step) {
  const double bc1 = 1 - std::pow(beta1, step), bc2 = 1 - std::pow(beta2, step);
  const double stepSize = lr / bc1, bc2Sqrt = std::sqrt(bc2), decay = 1 - lr * weightDecay;
  parallel_ranges(n, n, [&](i64 i0, i64 i1) {
    adamw_range(params, grads, m, v, i0, i1, decay, beta1, beta2, stepSize, bc2Sqrt, eps);
  });
}

}  // namespace tsdpo
