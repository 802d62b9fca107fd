// tsdpo's own SGEMM (see gemm.h for the contract). The loop structure, outermost first:
//
//   split   the threads divide C into contiguous slabs, whole micro-panels each: row slabs when M ≥ N, column slabs
//           otherwise. The operand the slab does not cut (B for row slabs, A for column slabs) is packed once,
//           cooperatively, into a shared buffer; each thread packs its own part of the other.
//   pc      K in blocks of at most KC (depth_of). Shared packing, a barrier, the threads' products. The shared
//           buffer is double: block b + 1 is packed into the other half while a slower thread may still be computing from block b, and the
//           barrier after packing b + 1 guarantees that every thread is done with b before b + 2 overwrites it, so one
//           barrier per block suffices.
//   ic      the packed A rows in blocks of mc, sized so a block (mc × kc floats) fits in half the L2.
//   jr      NR-column micro-panels of B: one stays in L1 while ...
//   ir      ... the micro-kernel walks the MR-row micro-panels of the A block past it, from L2.
//
// Tiles cut by the matrix's edge run the same micro-kernel on a whole tile in a local buffer (C's part copied in and
// back), so an edge element gets exactly the arithmetic an interior one gets.
//
// Room for other storage: the packing routines are the only code that reads A and B, so a weight stored as bf16 or
// in quantised blocks needs a pack routine that converts while it packs, and nothing else here changes.

#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "parallel.h"
#include "simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <unistd.h>
#endif

namespace tsdpo {
namespace {

#define ALWAYS_INLINE inline __attribute__((always_inline))

#define TSDPO_SIMD_FILE "gemm_kernels.inc"
#include "simd_copies.inc"

struct Kernels {
  const char* name;
  i64 mr, nr, kc;
  decltype(&portable::gemm_micro) micro;
  decltype(&portable::gemm_pack_a) pack_a;
  decltype(&portable::gemm_pack_b) pack_b;
  decltype(&portable::gemm_pack_b_quant) pack_b_quant;
  decltype(&portable::quant_pack_scratch) quant_scratch;
  decltype(&portable::dequant_row_simd) dequant_row;
};

#define TSDPO_GEMM_KERNELS(ns)                                                                                   \
  {#ns, ns::MR, ns::NR, ns::KC, ns::gemm_micro, ns::gemm_pack_a, ns::gemm_pack_b, ns::gemm_pack_b_quant, \
   ns::quant_pack_scratch, ns::dequant_row_simd}
const Kernels kPortable = TSDPO_GEMM_KERNELS(portable);
#if TSDPO_X86_DISPATCH
const Kernels kAvx2 = TSDPO_GEMM_KERNELS(avx2);
const Kernels kAvx512 = TSDPO_GEMM_KERNELS(avx512);
#endif
#undef TSDPO_GEMM_KERNELS

// The largest tile of any copy, for the edge buffer.
constexpr i64 kMaxTile = 12 * 32;

const Kernels* kernels_for(const char* level) {
  return simd_pick<Kernels>(level, TSDPO_IF_X86(&kAvx512), TSDPO_IF_X86(&kAvx2), &kPortable);
}

const Kernels* g_kernels = simd_best<Kernels>(TSDPO_IF_X86(&kAvx512), TSDPO_IF_X86(&kAvx2), &kPortable);

// Half the L2 (per core) holds the packed A rows that stream past each B micro-panel; where the OS does not say,
// assume 512 KiB (Zen 2/3).
i64 l2_bytes() {
#if defined(__linux__) && defined(_SC_LEVEL2_CACHE_SIZE)
  const long s = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (s >= (64 << 10) && s <= (64 << 20)) return s;
#endif
  return 512 << 10;
}
const i64 kL2 = l2_bytes();

// The depth of the packed blocks for a product of depth K: ⌈K / KC⌉ blocks of ⌈K / blocks⌉ (the last one shorter),
// so K = 576 is two blocks of 288 rather than 512 + 64. A function of K and the micro-kernel alone, so results never
// depend on M, N or the threads.
i64 depth_of(const Kernels& g, i64 K) {
  const i64 blocks = (K + g.kc - 1) / g.kc;
  return (K + blocks - 1) / blocks;
}

// Rows of packed A per L2 block: kc × mc floats in half the L2, a whole number of micro-panels, at least two.
i64 l2_rows(const Kernels& g, i64 kc) {
  const i64 m = kL2 / 2 / (kc * static_cast<i64>(sizeof(float)));
  return std::max(2 * g.mr, m / g.mr * g.mr);
}

// Shared packed blocks are capped at this many rows of A (column slabs) or columns of B (row slabs), private blocks
// at kPrivateSpan: a few MB at most, beyond which the block is walked in parts.
constexpr i64 kSharedSpan = 2304;
constexpr i64 kPrivateSpan = 1536;
// Below this many flops per thread a product stays on one thread: waking the pool costs a few µs.
constexpr double kMinFlopsPerThread = 1 << 21;

// A 64-byte-aligned float buffer that grows to the largest size asked for and is then reused.
struct Buffer {
  float* data = nullptr;
  i64 capacity = 0;
  float* get(i64 n) {
    if (n > capacity) {
      std::free(data);
      const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      capacity = data ? n : 0;
    }
    return data;
  }
  ~Buffer() { std::free(data); }
};
thread_local Buffer t_shared, t_private, t_dequant;

// op(B) as the GEMM reads it: floats (f, ld, trans), or rows stored in GGML blocks (q, type, rowBytes, trans; see
// gemm_pack_b_quant). Only the B packing looks inside.
struct BOperand {
  const float* f;
  i64 ld;
  bool trans;
  const uint8_t* q;
  int type;
  i64 rowBytes;
};

void pack_b(const Kernels& g, const BOperand& b, i64 p0, i64 kc, i64 j0, i64 n, float* out) {
  if (!b.q) return g.pack_b(b.f, b.ld, b.trans, p0, kc, j0, n, out);
  float* scratch = t_dequant.get(g.quant_scratch(b.type, kc, n));
  if (!scratch) std::abort();
  g.pack_b_quant(b.q, b.type, b.rowBytes, b.trans, p0, kc, j0, n, out, scratch);
}

// C (mb × nb at c) := alpha·Ap·Bp + beta·C from packed blocks of depth kb. Per L2 block of A rows, each B
// micro-panel is loaded into L1 once and every A micro-panel of the block streams past it.
void macro_kernel(const Kernels& g, const float* Ap, const float* Bp, i64 mb, i64 nb, i64 kb, float* c, i64 ldc,
                  float alpha, float beta) {
  const i64 MR = g.mr, NR = g.nr, mc = l2_rows(g, kb);
  alignas(64) float edge[kMaxTile];
  for (i64 i0 = 0; i0 < mb; i0 += mc) {
    const i64 i1 = std::min(mb, i0 + mc);
    for (i64 jp = 0; jp < nb; jp += NR) {
      const float* b = Bp + jp * kb;
      const i64 nr = std::min(NR, nb - jp);
      for (i64 ip = i0; ip < i1; ip += MR) {
        const float* a = Ap + ip * kb;
        const i64 mr = std::min(MR, mb - ip);
        float* ct = c + ip * ldc + jp;
        if (mr == MR && nr == NR) {
          g.micro(kb, a, b, ct, ldc, alpha, beta);
          continue;
        }
        if (beta != 0.0f)
          for (i64 i = 0; i < mr; i++) std::memcpy(edge + i * NR, ct + i * ldc, sizeof(float) * nr);
        g.micro(kb, a, b, edge, NR, alpha, beta);
        for (i64 i = 0; i < mr; i++) std::memcpy(ct + i * ldc, edge + i * NR, sizeof(float) * nr);
      }
    }
  }
}

// [lo, hi) of `units` for member `id` of a team of `size`: contiguous, as even as whole units allow.
inline void share(i64 units, int id, int size, i64* lo, i64* hi) {
  *lo = units * id / size;
  *hi = units * (id + 1) / size;
}

void scale_rows(float* C, i64 ldc, i64 M, i64 N, float beta) {
  for (i64 i = 0; i < M; i++) {
    float* c = C + i * ldc;
    if (beta == 0.0f)
      std::memset(c, 0, sizeof(float) * N);
    else if (beta != 1.0f)
      for (i64 j = 0; j < N; j++) c[j] *= beta;
  }
}


void gemm(bool transA, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda, const BOperand& B, float beta,
          float* C, i64 ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) return scale_rows(C, ldc, M, N, beta);
  const Kernels& g = *g_kernels;
  const i64 MR = g.mr, NR = g.nr, kc = depth_of(g, K);
  const bool rowSlabs = M >= N;
  const i64 units = rowSlabs ? (M + MR - 1) / MR : (N + NR - 1) / NR;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  // Called from inside a region (attention's tasks), par::run makes this a team of one.
  const i64 nt = std::min<i64>({par::threads(), units, std::max<i64>(1, static_cast<i64>(flops / kMinFlopsPerThread))});

  if (rowSlabs) {
    // Threads own rows of C; B is packed together, kc × (≤ kSharedSpan) at a time.
    const i64 span = std::min(N, kSharedSpan / NR * NR);
    const i64 half = kc * ((span + NR - 1) / NR * NR);
    float* shared = t_shared.get(2 * half);
    if (!shared) std::abort();
    par::run(static_cast<int>(nt), [&](const par::Team& team) {
      i64 u0, u1;
      share(units, team.id, team.size, &u0, &u1);
      const i64 r0 = std::min(M, u0 * MR), r1 = std::min(M, u1 * MR);
      const i64 rows = std::min(r1 - r0, kPrivateSpan);
      float* privA = rows > 0 ? t_private.get(kc * ((rows + MR - 1) / MR * MR)) : nullptr;
      if (rows > 0 && !privA) std::abort();
      i64 block = 0;
      for (i64 jc = 0; jc < N; jc += span) {
        const i64 nb = std::min(span, N - jc), panels = (nb + NR - 1) / NR;
        for (i64 pc = 0; pc < K; pc += kc, block++) {
          const i64 kb = std::min(kc, K - pc);
          float* sharedB = shared + (block % 2) * half;
          i64 p0, p1;
          share(panels, team.id, team.size, &p0, &p1);
          if (p1 > p0)
            pack_b(g, B, pc, kb, jc + p0 * NR, std::min(nb, p1 * NR) - p0 * NR, sharedB + p0 * NR * kb);
          team.barrier();
          for (i64 ic = r0; ic < r1; ic += kPrivateSpan) {
            const i64 mb = std::min(kPrivateSpan, r1 - ic);
            g.pack_a(A, lda, transA, ic, mb, pc, kb, privA);
            macro_kernel(g, privA, sharedB, mb, nb, kb, C + ic * ldc + jc, ldc, alpha, pc == 0 ? beta : 1.0f);
          }
        }
      }
    });
    return;
  }

  // Threads own columns of C; A is packed together, (≤ kSharedSpan) × kc at a time.
  const i64 span = std::min(M, kSharedSpan / MR * MR), nc = kPrivateSpan;
  const i64 half = kc * ((span + MR - 1) / MR * MR);
  float* shared = t_shared.get(2 * half);
  if (!shared) std::abort();
  par::run(static_cast<int>(nt), [&](const par::Team& team) {
    i64 u0, u1;
    share(units, team.id, team.size, &u0, &u1);
    const i64 c0 = std::min(N, u0 * NR), c1 = std::min(N, u1 * NR);
    float* privB = c1 > c0 ? t_private.get(kc * std::min((c1 - c0 + NR - 1) / NR * NR, nc)) : nullptr;
    if (c1 > c0 && !privB) std::abort();
    i64 block = 0;
    for (i64 ic = 0; ic < M; ic += span) {
      const i64 mb = std::min(span, M - ic), panels = (mb + MR - 1) / MR;
      for (i64 pc = 0; pc < K; pc += kc, block++) {
        const i64 kb = std::min(kc, K - pc);
        float* sharedA = shared + (block % 2) * half;
        i64 p0, p1;
        share(panels, team.id, team.size, &p0, &p1);
        if (p1 > p0)
          g.pack_a(A, lda, transA, ic + p0 * MR, std::min(mb, p1 * MR) - p0 * MR, pc, kb, sharedA + p0 * MR * kb);
        team.barrier();
        for (i64 jc = c0; jc < c1; jc += nc) {
          const i64 nb = std::min(nc, c1 - jc);
          pack_b(g, B, pc, kb, jc, nb, privB);
          macro_kernel(g, sharedA, privB, mb, nb, kb, C + ic * ldc + jc, ldc, alpha, pc == 0 ? beta : 1.0f);
        }
      }
    }
  });
}

}  // namespace

void sgemm(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda, const float* B,
           i64 ldb, float beta, float* C, i64 ldc) {
  gemm(transA, M, N, K, alpha, A, lda, BOperand{B, ldb, transB, nullptr, 0, 0}, beta, C, ldc);
}

void sgemm_quant_b(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda,
                   const uint8_t* B, int type, i64 rowBytes, float beta, float* C, i64 ldc) {
  gemm(transA, M, N, K, alpha, A, lda, BOperand{nullptr, 0, transB, B, type, rowBytes}, beta, C, ldc);
}

bool gemm_dequant_row(int type, const uint8_t* src, float* dst, i64 n) { return g_kernels->dequant_row(type, src, dst, n); }

bool gemm_set_level(const char* level) {
  const Kernels* k = kernels_for(level);
  if (k) g_kernels = k;
  return k != nullptr;
}

const char* gemm_describe() {
  static thread_local std::string s;
  const Kernels& g = *g_kernels;
  s = std::string(g.name) + " " + std::to_string(g.mr) + "x" + std::to_string(g.nr) + ", kc " + std::to_string(g.kc) +
      ", mc " + std::to_string(l2_rows(g, g.kc)) + " at kc " + std::to_string(g.kc) + " (L2 " + std::to_string(kL2 >> 10) +
      " KiB)";
  return s.c_str();
}

}  // namespace tsdpo
