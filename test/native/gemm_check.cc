// The GEMM's own check in C++, for a build that node cannot load: the portable micro-kernel cross-compiled for arm64
// and run under qemu-user (scripts/test-arm64.sh). The same checks as test/gemm.test.ts, in small: every layout, alpha
// and beta, shapes on and off the tile and KC boundaries, 1-3 threads, against a double-precision loop with the
// rigorous bound (K + 3)·u·(|alpha|·Σ|a·b| + |beta·c|); then bit-equality across calls and thread counts. It also
// runs the addon's other kernels' file (kernels.cc) far enough to show it compiles and its FMA probe runs.
//
// Prints one line per failure and ends with "N passed, M failed"; exits 1 on any failure.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../../src/backend/native/gemm.h"
#include "../../src/backend/native/kernels.h"
#include "../../src/backend/native/parallel.h"

using tsdpo::i64;

namespace {

uint32_t g_state = 12345;
float next_float() {  // xorshift32 in [-1, 1)
  g_state ^= g_state << 13;
  g_state ^= g_state >> 17;
  g_state ^= g_state << 5;
  return static_cast<float>(g_state >> 8) / 8388608.0f - 1.0f;
}

int g_passed = 0, g_failed = 0;

void check_case(i64 M, i64 N, i64 K, bool tA, bool tB, float alpha, float beta, int threads) {
  const i64 lda = tA ? M : K, ldb = tB ? K : N, ldc = N;
  std::vector<float> A(static_cast<size_t>(std::max<i64>(1, M * K))), B(static_cast<size_t>(std::max<i64>(1, K * N))),
      C(static_cast<size_t>(std::max<i64>(1, M * N)));
  for (float& x : A) x = next_float();
  for (float& x : B) x = next_float();
  for (float& x : C) x = beta == 0.0f ? NAN : next_float();
  std::vector<float> C0 = C;
  tsdpo::par::set_threads(threads);
  tsdpo::sgemm(tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  const double u = std::ldexp(1.0, -24);
  for (i64 i = 0; i < M; i++)
    for (i64 j = 0; j < N; j++) {
      double dot = 0, mag = 0;
      for (i64 k = 0; k < K; k++) {
        const double a = tA ? A[k * lda + i] : A[i * lda + k], b = tB ? B[j * ldb + k] : B[k * ldb + j];
        dot += a * b;
        mag += std::fabs(a * b);
      }
      const double old = beta == 0.0f ? 0.0 : static_cast<double>(beta) * C0[i * ldc + j];
      const double want = alpha * dot + old, bound = (K + 3) * u * (std::fabs(alpha) * mag + std::fabs(old)) + 1e-30;
      if (!(std::fabs(C[i * ldc + j] - want) <= bound)) {
        std::printf("FAIL %lldx%lldx%lld %c%c alpha %g beta %g threads %d: C[%lld][%lld] = %.9g, exact %.9g\n",
                    (long long)M, (long long)N, (long long)K, tA ? 'T' : 'N', tB ? 'T' : 'N', alpha, beta, threads,
                    (long long)i, (long long)j, C[i * ldc + j], want);
        g_failed++;
        return;
      }
    }
  g_passed++;
}

void check_determinism(i64 M, i64 N, i64 K) {
  std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N)), first;
  for (float& x : A) x = next_float();
  for (float& x : B) x = next_float();
  for (int threads : {1, 2, 3, 1}) {
    tsdpo::par::set_threads(threads);
    std::vector<float> C(static_cast<size_t>(M * N), 0.5f);
    tsdpo::sgemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 1.0f, C.data(), N);
    if (first.empty()) {
      first = C;
    } else if (std::memcmp(first.data(), C.data(), sizeof(float) * C.size()) != 0) {
      std::printf("FAIL determinism %lldx%lldx%lld: %d threads gave other bits than 1\n", (long long)M, (long long)N,
                  (long long)K, threads);
      g_failed++;
      return;
    }
  }
  g_passed++;
}

}  // namespace

int main() {
  std::printf("gemm %s, thread pool %s, simd %s\n", tsdpo::gemm_describe(), tsdpo::par::kind(), tsdpo::simd_level());
  const i64 shapes[][3] = {{1, 1, 1}, {1, 300, 7}, {300, 1, 5}, {7, 11, 13}, {31, 37, 41}, {5, 7, 255},
                           {7, 9, 257}, {13, 17, 513}, {97, 89, 83}, {6, 8, 256}, {12, 32, 256}, {11, 33, 0}};
  const float alphaBeta[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.75f, -0.5f}};
  for (const auto& s : shapes)
    for (int layout = 0; layout < 4; layout++)
      for (const auto& ab : alphaBeta)
        for (int threads : {1, 2, 3}) check_case(s[0], s[1], s[2], layout & 1, layout & 2, ab[0], ab[1], threads);
  check_determinism(61, 150, 600);
  check_determinism(150, 61, 700);
  tsdpo::set_threads(2);
  const double peak = tsdpo::fma_peak_gflops(20);
  if (peak > 0) g_passed++; else { std::printf("FAIL fma_peak_gflops returned %g\n", peak); g_failed++; }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
