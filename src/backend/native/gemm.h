// tsdpo's own single-precision GEMM: C := alpha·op(A)·op(B) + beta·C, row-major, op(X) = X or Xᵀ. Every matrix
// product of the native backend goes through it: the linear layers forward and backward, the attention's per-head
// products and the LM head's vocabulary tiles.
//
// BLIS-style: operands are packed into micro-panels (gemm_kernels.inc) in cache-sized blocks, and a register-tiled
// micro-kernel (AVX-512, AVX2+FMA, or portable C++; chosen by CPUID, or by TSDPO_SIMD) computes MR × NR tiles.
//
// Determinism: K is never split between threads. Each element of C is accumulated by one thread, in k order, in
// blocks whose depth depends on K alone, so the result is the same bits on every call, on any thread count, and
// whatever other rows or columns share the call (a row of C depends only on its row of op(A) and on op(B)).
// Different instruction sets round differently.
//
// K = 0 (or alpha = 0): C := beta·C, and beta = 0 sets C to zeros without reading it, as BLAS does.
#pragma once
#include <cstdint>

namespace tsdpo {

using i64 = int64_t;

void sgemm(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda, const float* B,
           i64 ldb, float beta, float* C, i64 ldc);

// The same product with B read from rows stored in GGML blocks of ggml type `type` (src/backend/native/quant.inc),
// rowBytes bytes each: op(B) = Sᵀ when transB (S is (N, K), a frozen weight in the forward), else S (K, N). The
// blocks are dequantised inside the B packing, a panel's span at a time, so no float copy of S is made; the result
// has the bits sgemm gives on the dequantised matrix. Stored rows must be whole blocks; the caller checks the type.
void sgemm_quant_b(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda,
                   const uint8_t* B, int type, i64 rowBytes, float beta, float* C, i64 ldc);

// One stored row of n elements (whole blocks) into floats, with the vectorised copy of the selected level.
bool gemm_dequant_row(int type, const uint8_t* src, float* dst, i64 n);

// Selects the micro-kernels of one instruction-set level (see simd.h); false, changing nothing, when this CPU or
// build cannot run it.
bool gemm_set_level(const char* level);
// The level in use, its tile and blocking: e.g. "avx512 12x32, kc 512, mc 252 at kc 512 (L2 1024 KiB)".
const char* gemm_describe();

}  // namespace tsdpo
