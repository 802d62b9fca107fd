// tsdpo's own GEMM (src/backend/native/gemm.cc) behind the CBLAS entry point, so that sgemm-shapes measures it
// exactly as it measures OpenBLAS and the others: one more library opened with dlopen. run.sh builds it with the
// addon's compiler flags:
//
//   g++ -std=gnu++17 -O3 -fopenmp -fno-math-errno -fno-trapping-math -shared -fPIC -o libtsdpo-gemm.so
//     bench/blas/tsdpo-cblas.cc src/backend/native/gemm.cc src/backend/native/parallel.cc
//
// Threads: OMP_NUM_THREADS (as the OpenMP libraries read it), read on the first call. TSDPO_SIMD picks a narrower
// micro-kernel, as in the addon.

#include <cstdio>
#include <cstdlib>

#include "../../src/backend/native/gemm.h"
#include "../../src/backend/native/parallel.h"

namespace {
bool configure() {
  const char* t = std::getenv("OMP_NUM_THREADS");
  tsdpo::par::set_threads(t ? std::atoi(t) : 1);
  const char* simd = std::getenv("TSDPO_SIMD");
  if (simd && !tsdpo::gemm_set_level(simd)) {
    std::fprintf(stderr, "tsdpo-cblas: TSDPO_SIMD=%s is not available here\n", simd);
    std::exit(1);
  }
  return true;
}
}  // namespace

extern "C" {
// The reference CBLAS enums: 101 row-major, 111 no transpose, 112 transpose. Only row-major is supported.
void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  static const bool ready = configure();  // a function-local static: configured once, whichever is called first
  (void)ready;
  if (order != 101) {
    std::fprintf(stderr, "tsdpo-cblas: only row-major (101) is supported\n");
    std::abort();
  }
  tsdpo::sgemm(transA == 112, transB == 112, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* tsdpo_gemm_describe(void) {
  static const bool ready = configure();
  (void)ready;
  return tsdpo::gemm_describe();
}
}
