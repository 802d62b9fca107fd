// Native float32 kernels for tsdpo (the contract is src/backend/contract.ts, the definition src/backend/js/kernels.ts).
//
// Threads: the addon's one pool (parallel.h: OpenMP, or std::threads where the compiler has no OpenMP). Work is split
// into contiguous row (or column) ranges, or into tasks (attention) that each own their outputs, and every output
// element is computed by one thread in one fixed order, so the kernels give the same bits on any thread count. Matrix
// products go to tsdpo's own GEMM (gemm.cc), which keeps that property.
//
// Memory: attention keeps nothing (T, T) — per-thread (64, ≤ T) score tiles and a log-normaliser per query — and the
// LM head never holds the (M, V) logits, only a (rows, 4096) tile of them.
//
// SIMD: the loops in simd_kernels.inc are plain C++ written to auto-vectorise (`omp simd`, no calls in the loop
// bodies). They are compiled three times, for AVX-512 ("x86-64-v4"), AVX2+FMA ("x86-64-v3") and the portable copy
// (the compiler's default target: SSE2 on x86-64), each copy in its own namespace, and g_simd points at the table of
// the widest copy the CPU supports, chosen from CPUID when the addon loads. AVX-512 code is never called on a CPU
// without it, and the copies share no inline function the linker could mix up. set_simd() (TSDPO_SIMD) selects a
// narrower copy, for these loops and the GEMM's micro-kernels together, so tests check every copy the machine can run.
//
// Precision: reductions that the TypeScript reference carries in double (sums of squares, softmax and log-softmax
// normalisers and the LM head's running sums, attention's dout·out, dot products of RMSNorm backward, LayerNorm's
// mean, variance and backward sums, AdamW's update) are carried in double here too; elementwise maths is float32;
// exp is our own vectorisable float32 exp (≤ 2 ulp over the range that matters, see exp_f32).

#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "gemm.h"
#include "parallel.h"
#include "simd.h"

#include "quant.inc"  // namespace ggml_quant: the block formats (sizes here; the GEMM copies dequantise)

#define ALWAYS_INLINE inline __attribute__((always_inline))

namespace tsdpo {
namespace {

// Below this many elements of work a kernel stays on the calling thread: waking the pool costs ~1-5 µs.
constexpr i64 kGrain = 1 << 14;

// Calls f(lo, hi) on contiguous, disjoint ranges covering [0, n), one per thread.
template <class F>
void parallel_ranges(i64 n, i64 work, F&& f) {
  i64 nt = std::min<i64>(par::threads(), n);
  if (nt <= 1 || work < kGrain) {  // (a region nested in another runs on its thread alone: par::run sees to it)
    if (n > 0) f(i64{0}, n);
    return;
  }
  par::run(static_cast<int>(nt), [&](const par::Team& team) {
    const i64 lo = n * team.id / team.size, hi = n * (team.id + 1) / team.size;
    if (lo < hi) f(lo, hi);
  });
}

// The range kernels, compiled once per instruction set (see simd_copies.inc) and called through g_simd.
#define TSDPO_SIMD_FILE "simd_kernels.inc"
#include "simd_copies.inc"

#define TSDPO_SIMD_FUNCTIONS(X, ns) \
  X(ns, embedding_backward_cols) X(ns, rmsnorm_forward_rows) X(ns, rmsnorm_backward_rows) \
  X(ns, rmsnorm_dweight_cols) X(ns, layernorm_forward_rows) X(ns, layernorm_backward_rows) \
  X(ns, layernorm_dweight_cols) X(ns, column_sums) X(ns, rope_rows) X(ns, softmax_causal_row) \
  X(ns, softmax_spans_row) X(ns, probs_from_lse_row) X(ns, softmax_grad_row) X(ns, softcap_range) \
  X(ns, softcap_grad_range) X(ns, mul_range) X(ns, dot_f32) X(ns, dot_f64) \
  X(ns, axpy_f32) X(ns, swiglu_forward_range) X(ns, swiglu_backward_range) X(ns, geglu_forward_range) \
  X(ns, geglu_backward_range) X(ns, gelu_forward_range) X(ns, gelu_backward_range) X(ns, add_range) \
  X(ns, accumulate_range) X(ns, scale_range) X(ns, sum_squares_range) \
  X(ns, lm_head_tile_stats) X(ns, lm_head_tile_grad) X(ns, lm_head_tile_grad_softcap) X(ns, adamw_range) X(ns, fma_burst)

struct SimdTable {
  const char* name;
#define TSDPO_MEMBER(ns, f) decltype(&ns::f) f;
  TSDPO_SIMD_FUNCTIONS(TSDPO_MEMBER, portable)
#undef TSDPO_MEMBER
};

#define TSDPO_ENTRY(ns, f) ns::f,
const SimdTable kPortable = {"portable", TSDPO_SIMD_FUNCTIONS(TSDPO_ENTRY, portable)};
#if TSDPO_X86_DISPATCH
const SimdTable kAvx2 = {"avx2", TSDPO_SIMD_FUNCTIONS(TSDPO_ENTRY, avx2)};
const SimdTable kAvx512 = {"avx512", TSDPO_SIMD_FUNCTIONS(TSDPO_ENTRY, avx512)};
#endif
#undef TSDPO_ENTRY

// The table of `level` when this build has it and this CPU can run it (simd.h), else nullptr.
const SimdTable* simd_table(const char* level) {
  return simd_pick<SimdTable>(level, TSDPO_IF_X86(&kAvx512), TSDPO_IF_X86(&kAvx2), &kPortable);
}

const SimdTable* g_simd = simd_best<SimdTable>(TSDPO_IF_X86(&kAvx512), TSDPO_IF_X86(&kAvx2), &kPortable);


// Per-thread scratch that grows to the largest size asked for and is then reused (no allocation per step).
float* thread_scratch(i64 n) {
  thread_local std::vector<float> buf;
  if (static_cast<i64>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// Calls f(task) for every task in [0, n), spread over the threads as they come free (tasks of unequal cost, such
// as attention's query blocks, balance better than in fixed ranges). Each task writes its own outputs in a fixed
// order, so which thread runs it changes no bit.
template <class F>
void parallel_tasks(i64 n, i64 work, F&& f) {
  i64 nt = std::min<i64>(par::threads(), n);
  if (nt <= 1 || work < kGrain) {
    for (i64 t = 0; t < n; t++) f(t);
    return;
  }
  std::atomic<i64> next{0};
  par::run(static_cast<int>(nt), [&](const par::Team&) {
    for (i64 t = next.fetch_add(1, std::memory_order_relaxed); t < n; t = next.fetch_add(1, std::memory_order_relaxed))
      f(t);
  });
}

inline i64 first_key(i64 t, i64 window) { return window > 0 ? std::max<i64>(0, t - window + 1) : 0; }

// ---------------------------------------------------------------------------------------------------------------
// Attention masks. A row packs prompt ++ chosen ++ rejected with branch [P, S] (S ≥ T: no branch), and query i sees
// the keys attentionVisible (src/backend/js/mask.ts) gives it: [a0, a1) ∪ [b0, b1). Causal queries (i < S) see one
// range, [first_key(i), i + 1), kept here as A with B empty; rejected-branch queries (i ≥ S) see the prompt as A
// (cut by the window at their restarted position i − (S − P)) and their own branch S..i as B.
struct KeyRanges {
  i64 a0, a1, b0, b1;
};

KeyRanges visible_keys(i64 i, i64 P, i64 S, i64 window) {
  if (i < S) return {first_key(i, window), i + 1, i + 1, i + 1};
  const i64 a0 = std::min(first_key(i - (S - P), window), P);
  return {a0, P, window > 0 ? std::max(S, i - window + 1) : S, i + 1};
}

// Query rows go in blocks of at most kBlock that never straddle S, so within a block every range start and end is
// non-decreasing in i, and the keys the whole block needs are two spans: A = [first query's a0, last query's a1)
// and B likewise. The score tile holds them side by side, A in columns [0, nA) and B in [nA, nA + nB): keys no query
// of the block sees (the causal upper triangle beyond the block, keys behind the window, the chosen answer for
// rejected queries) are never computed.
constexpr i64 kBlock = 64;

struct QueryBlock {
  i64 m0, m1;   // queries [m0, m1)
  i64 A0, nA;   // keys [A0, A0 + nA) in tile columns [0, nA)
  i64 B0, nB;   // keys [B0, B0 + nB) in tile columns [nA, nA + nB)
  bool branch;  // queries of the rejected branch (i ≥ S)
};

// Blocks per row: ⌈min(S, T)/kBlock⌉ before S and ⌈(T − S)/kBlock⌉ after; never more than this.
inline i64 max_blocks(i64 T) { return (T + kBlock - 1) / kBlock + 1; }

// Block b of a row with branch [P, S]; false when the row has fewer blocks.
bool query_block(i64 b, i64 T, i64 P, i64 S, i64 window, QueryBlock* out) {
  const i64 split = std::min(S, T), before = (split + kBlock - 1) / kBlock;
  i64 m0, m1;
  if (b < before) {
    m0 = b * kBlock;
    m1 = std::min(m0 + kBlock, split);
  } else {
    m0 = split + (b - before) * kBlock;
    if (m0 >= T) return false;
    m1 = std::min(m0 + kBlock, T);
  }
  const KeyRanges first = visible_keys(m0, P, S, window), last = visible_keys(m1 - 1, P, S, window);
  QueryBlock q{m0, m1, first.a0, std::max<i64>(0, last.a1 - first.a0), 0, 0, m0 >= S};
  if (q.branch) {
    q.B0 = first.b0;
    q.nB = last.b1 - first.b0;
  }
  *out = q;
  return true;
}

// Query i's visible keys as tile columns, ordered 0 ≤ a0 ≤ a1 ≤ b0 ≤ b1 ≤ nA + nB as the row kernels want.
KeyRanges tile_columns(const QueryBlock& blk, i64 i, i64 P, i64 S, i64 window) {
  const KeyRanges k = visible_keys(i, P, S, window);
  KeyRanges c{0, 0, blk.nA, blk.nA};  // an empty A sits at column 0, never after B's start
  if (k.a1 > k.a0) c = {k.a0 - blk.A0, k.a1 - blk.A0, blk.nA, blk.nA};
  if (blk.branch) {
    c.b0 = blk.nA + (k.b0 - blk.B0);
    c.b1 = blk.nA + (k.b1 - blk.B0);
  }
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Runtime information

int set_threads(int n) { return par::set_threads(n); }
int get_threads() { return par::threads(); }
const char* thread_pool_kind() { return par::kind(); }

const char* simd_level() { return g_simd->name; }

bool set_simd(const char* level) {
  const SimdTable* t = simd_table(level);
  if (!t || !gemm_set_level(level)) return false;
  g_simd = t;
  return true;
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

// offset 0 goes to the row loops as −0.0, which adds to any weight without changing a bit (see rmsnorm_forward_rows).
inline double weight_offset(double offset) { return offset == 0 ? -0.0 : offset; }

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, i64 N, i64 C, float eps,
                     double offset) {
  const double off = weight_offset(offset);
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) {
    g_simd->rmsnorm_forward_rows(out, rstd, inp, weight, n0, n1, C, eps, off);
  });
}

// The weight gradient dy · x · rstd does not depend on the offset.
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, i64 N, i64 C, double offset) {
  const double off = weight_offset(offset);
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) {
    g_simd->rmsnorm_backward_rows(dinp, dout, inp, weight, rstd, n0, n1, C, off);
  });
  if (dweight)
    parallel_ranges(C, N * C, [&](i64 c0, i64 c1) {
      g_simd->rmsnorm_dweight_cols(dweight, dout, inp, rstd, N, C, c0, c1);
    });
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       i64 N, i64 C, float eps) {
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) {
    g_simd->layernorm_forward_rows(out, mean, rstd, inp, weight, bias, n0, n1, C, eps);
  });
}

// dinp over rows; dweight and dbias (sums over rows) over columns, each column summed by one thread in row order.
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, i64 N, i64 C) {
  parallel_ranges(N, N * C, [&](i64 n0, i64 n1) {
    g_simd->layernorm_backward_rows(dinp, dout, inp, weight, mean, rstd, n0, n1, C);
  });
  if (dweight || dbias)
    parallel_ranges(C, N * C, [&](i64 c0, i64 c1) {
      if (dweight) g_simd->layernorm_dweight_cols(dweight, dout, inp, mean, rstd, N, C, c0, c1);
      if (dbias) g_simd->column_sums(dbias, dout, N, C, c0, c1);
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

// Products with a frozen matrix W (OC, IC) stored in GGML blocks (src/model/weights.ts): the GEMM dequantises W inside
// its B packing (gemm.h, sgemm_quant_b), so each product has the bits of the float product on the dequantised W and
// no float copy of W exists at any time.
void matmul_forward_quant(float* out, const float* inp, const uint8_t* w, int type, const float* bias, i64 N, i64 IC,
                          i64 OC) {
  if (N == 0 || OC == 0) return;
  if (bias)
    parallel_ranges(N, N * OC, [&](i64 n0, i64 n1) {
      for (i64 n = n0; n < n1; n++) std::memcpy(out + n * OC, bias, sizeof(float) * OC);
    });
  if (IC == 0) {
    if (!bias) std::memset(out, 0, sizeof(float) * N * OC);
    return;
  }
  // out (+)= inp · Wᵀ
  sgemm_quant_b(false, true, N, OC, IC, 1.0f, inp, IC, w, type, quant_row_bytes(type, IC), bias ? 1.0f : 0.0f, out, OC);
}

void matmul_backward_quant(float* dinp, const float* dout, const uint8_t* w, int type, i64 N, i64 IC, i64 OC) {
  if (N == 0 || OC == 0 || IC == 0 || !dinp) return;
  sgemm_quant_b(false, false, N, IC, OC, 1.0f, dout, OC, w, type, quant_row_bytes(type, IC), 1.0f, dinp, IC);  // dinp += dout · W
}

void rope(float* x, const float* cos, const float* sin, const int32_t* pos, i64 N, i64 H, i64 HS, i64 RD, float sign) {
  parallel_ranges(N, N * H * RD, [&](i64 n0, i64 n1) { g_simd->rope_rows(x, cos, sin, pos, n0, n1, H, HS, RD, sign); });
}

// One task per (row, head, query block): each block's scores against its key spans by sgemm into a (kBlock, ≤ T)
// per-thread tile (scaled, then soft-capped when softcap > 0), softmax per query row there (saving lse), then
// out = p · v by sgemm. Nothing (T, T) exists.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* branch,
                       i64 R, i64 T, i64 NH, i64 NKV, i64 HS, i64 window, float scale, float softcap) {
  const i64 group = NH / NKV, qStride = NH * HS, kvStride = NKV * HS, blocks = max_blocks(T);
  parallel_tasks(R * NH * blocks, R * NH * T * T * HS, [&](i64 task) {
    const i64 r = task / (NH * blocks), h = task / blocks % NH, b = task % blocks;
    const i64 P = branch ? branch[2 * r] : T, S = branch ? branch[2 * r + 1] : T;
    QueryBlock blk;
    if (!query_block(b, T, P, S, window, &blk)) return;
    const i64 mb = blk.m1 - blk.m0, ld = blk.nA + blk.nB;
    const float* qb = q + (r * T + blk.m0) * qStride + h * HS;
    const float* kh = k + r * T * kvStride + (h / group) * HS;
    const float* vh = v + r * T * kvStride + (h / group) * HS;
    float* ob = out + (r * T + blk.m0) * qStride + h * HS;
    float* lseRow = lse + (r * NH + h) * T;
    float* tile = thread_scratch(kBlock * T);
    if (blk.nA > 0) sgemm(false, true, mb, blk.nA, HS, scale, qb, qStride, kh + blk.A0 * kvStride, kvStride, 0.0f, tile, ld);
    if (blk.nB > 0)
      sgemm(false, true, mb, blk.nB, HS, scale, qb, qStride, kh + blk.B0 * kvStride, kvStride, 0.0f, tile + blk.nA, ld);
    if (softcap > 0) g_simd->softcap_range(tile, mb * ld, softcap);
    for (i64 i = blk.m0; i < blk.m1; i++) {
      const KeyRanges c = tile_columns(blk, i, P, S, window);
      lseRow[i] = static_cast<float>(g_simd->softmax_spans_row(tile + (i - blk.m0) * ld, ld, c.a0, c.a1, c.b0, c.b1));
    }
    if (blk.nA > 0) sgemm(false, false, mb, HS, blk.nA, 1.0f, tile, ld, vh + blk.A0 * kvStride, kvStride, 0.0f, ob, qStride);
    if (blk.nB > 0)
      sgemm(false, false, mb, HS, blk.nB, 1.0f, tile + blk.nA, ld, vh + blk.B0 * kvStride, kvStride,
            blk.nA > 0 ? 1.0f : 0.0f, ob, qStride);
  });
}

// One task per (row, KV head): the query heads that share a KV head all add into its dk and dv, so they run in the
// same task, in order, and no two threads ever write the same gradient element. Per query block, on the same key
// spans as the forward: p = exp(cap(scale·q·kᵀ) − lse) and dp = dout·vᵀ recomputed in two per-thread tiles, then
// ds = p ⊙ (dp − D)·scale with D = dout·out (times cap' = 1 − tanh² from a third tile when softcap > 0), and
// dq += ds·k, dk += dsᵀ·q, dv += pᵀ·dout, each span by sgemm.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* branch, i64 R, i64 T,
                        i64 NH, i64 NKV, i64 HS, i64 window, float scale, float softcap) {
  const i64 group = NH / NKV, qStride = NH * HS, kvStride = NKV * HS, blocks = max_blocks(T);
  parallel_tasks(R * NKV, R * NH * T * T * HS, [&](i64 task) {
    const i64 r = task / NKV, kvh = task % NKV;
    const i64 P = branch ? branch[2 * r] : T, S = branch ? branch[2 * r + 1] : T;
    float* p = thread_scratch((softcap > 0 ? 3 : 2) * kBlock * T);
    float* ds = p + kBlock * T;
    float* dcap = ds + kBlock * T;  // only with a soft cap
    const float* kh = k + r * T * kvStride + kvh * HS;
    const float* vh = v + r * T * kvStride + kvh * HS;
    float* dkh = dk + r * T * kvStride + kvh * HS;
    float* dvh = dv + r * T * kvStride + kvh * HS;
    for (i64 h = kvh * group; h < (kvh + 1) * group; h++) {
      const float* lseRow = lse + (r * NH + h) * T;
      for (i64 b = 0; b < blocks; b++) {
        QueryBlock blk;
        if (!query_block(b, T, P, S, window, &blk)) break;
        const i64 mb = blk.m1 - blk.m0, ld = blk.nA + blk.nB;
        const i64 qo = (r * T + blk.m0) * qStride + h * HS;
        const float *qb = q + qo, *dob = dout + qo, *outb = out + qo;
        float* dqb = dq + qo;
        // the spans: keys, values and their gradients at tile columns [col, col + n)
        struct Span {
          i64 key, n, col;
        };
        const Span spans[2] = {{blk.A0, blk.nA, 0}, {blk.B0, blk.nB, blk.nA}};
        for (const Span& sp : spans) {
          if (sp.n == 0) continue;
          sgemm(false, true, mb, sp.n, HS, scale, qb, qStride, kh + sp.key * kvStride, kvStride, 0.0f, p + sp.col, ld);
          sgemm(false, true, mb, sp.n, HS, 1.0f, dob, qStride, vh + sp.key * kvStride, kvStride, 0.0f, ds + sp.col, ld);
        }
        if (softcap > 0) g_simd->softcap_grad_range(p, dcap, mb * ld, softcap);
        for (i64 i = blk.m0; i < blk.m1; i++) {
          const KeyRanges c = tile_columns(blk, i, P, S, window);
          float* pr = p + (i - blk.m0) * ld;
          g_simd->probs_from_lse_row(pr, ld, c.a0, c.a1, c.b0, c.b1, lseRow[i]);
          const i64 o = (i - blk.m0) * qStride;
          const float D = static_cast<float>(g_simd->dot_f64(dob + o, outb + o, HS));
          g_simd->softmax_grad_row(ds + (i - blk.m0) * ld, pr, ld, D, scale);
          if (softcap > 0) g_simd->mul_range(ds + (i - blk.m0) * ld, dcap + (i - blk.m0) * ld, ld);
        }
        for (const Span& sp : spans) {
          if (sp.n == 0) continue;
          sgemm(false, false, mb, HS, sp.n, 1.0f, ds + sp.col, ld, kh + sp.key * kvStride, kvStride, 1.0f, dqb,
                qStride);  // dq += ds · k
          sgemm(true, false, sp.n, HS, mb, 1.0f, ds + sp.col, ld, qb, qStride, 1.0f, dkh + sp.key * kvStride,
                kvStride);  // dk += dsᵀ · q
          sgemm(true, false, sp.n, HS, mb, 1.0f, p + sp.col, ld, dob, qStride, 1.0f, dvh + sp.key * kvStride,
                kvStride);  // dv += pᵀ · dout
        }
      }
    }
  });
}

void attention_decode(float* out, const float* q, const float* kCache, const float* vCache, i64 T, i64 pos0, i64 NH,
                      i64 NKV, i64 HS, i64 window, float scale, float softcap) {
  const i64 group = NH / NKV, qStride = NH * HS, kvStride = NKV * HS;
  parallel_ranges(T * NH, T * NH * (pos0 + T) * HS, [&](i64 task0, i64 task1) {
    float* s = thread_scratch(pos0 + T);
    for (i64 task = task0; task < task1; task++) {
      const i64 t = task / NH, h = task % NH, pos = pos0 + t, first = first_key(pos, window);
      const float* qh = q + t * qStride + h * HS;
      const i64 kvOff = (h / group) * HS;
      for (i64 j = first; j <= pos; j++) s[j] = scale * g_simd->dot_f32(qh, kCache + j * kvStride + kvOff, HS);
      if (softcap > 0) g_simd->softcap_range(s + first, pos + 1 - first, softcap);
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

void geglu_forward(float* out, const float* gate, const float* up, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->geglu_forward_range(out, gate, up, i0, i1); });
}

void geglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->geglu_backward_range(dgate, dup, dout, gate, up, i0, i1); });
}

void gelu_forward(float* out, const float* inp, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->gelu_forward_range(out, inp, i0, i1); });
}

void gelu_backward(float* dinp, const float* dout, const float* inp, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->gelu_backward_range(dinp, dout, inp, i0, i1); });
}

void add_forward(float* out, const float* a, const float* b, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->add_range(out, a, b, i0, i1); });
}

void accumulate(float* dst, const float* src, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->accumulate_range(dst, src, i0, i1); });
}

void scale(float* x, double s, i64 n) {
  parallel_ranges(n, n, [&](i64 i0, i64 i1) { g_simd->scale_range(x, s, i0, i1); });
}

// Fixed chunks summed in chunk order: the same bits on any thread count.
double sum_squares(const float* x, i64 n) {
  constexpr i64 kChunk = 1 << 16;
  const i64 chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  parallel_ranges(chunks, n, [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; c++) partial[c] = g_simd->sum_squares_range(x, c * kChunk, std::min(n, (c + 1) * kChunk));
  });
  double s = 0;
  for (double p : partial) s += p;
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// LM head fused with log-softmax and gather. The M wanted rows of x are gathered once into a contiguous (M, C)
// block Xg; the vocabulary is then walked in tiles of kVocabTile entries, z = Xg · W[v0:v1]ᵀ by sgemm (threaded by
// the BLAS), and the tile is folded into per-row statistics (forward) or turned into dz in place and pushed through
// two more sgemms (backward). So W is read once per pass, every dW element is written by one gemm per row block,
// and the (M, V) logits never exist: the tile is at most kTileFloats. Elementwise work is split over rows.

namespace {

// Picked by timing SmolLM-135M's head (M = 256, C = 576, V = 49152) on 2 shared Zen 3 cores: tiles of 1024 to 8192
// entries came within the run-to-run noise of each other, 4096 a little ahead; at M = 256 its tile is 4 MB.
constexpr i64 kVocabTile = 4096;
// Rows per block when M is large: the tile stays ≤ 8 MB (W is then read once per block).
constexpr i64 kTileFloats = i64{1} << 21;
inline i64 head_row_block() { return std::max<i64>(kBlock, kTileFloats / kVocabTile); }

// Scratch of the LM head, grown to the largest call and reused (these kernels run on the calling thread).
template <class T>
T* grow(std::vector<T>& v, i64 n) {
  if (static_cast<i64>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

struct HeadScratch {
  std::vector<float> xg, z, dxg, g, lse, runMax, targetLogit;
  std::vector<double> sumExp, sumExp2, sumExpShift, sumZ;
  std::vector<int32_t> target, row, runArgmax;
};
HeadScratch& head_scratch() {
  static HeadScratch s;
  return s;
}

// The head's weight (V, C): floats, or rows in GGML blocks that the GEMM dequantises while packing (sgemm_quant_b).
struct HeadWeight {
  const float* f;
  const uint8_t* q;
  int type;
  i64 rowBytes;
};

// z (mb, nb) = Xg · W[v0 : v0 + nb]ᵀ
void head_logits(float* z, const float* xg, const HeadWeight& W, i64 v0, i64 mb, i64 nb, i64 C) {
  if (W.q) return sgemm_quant_b(false, true, mb, nb, C, 1.0f, xg, C, W.q + v0 * W.rowBytes, W.type, W.rowBytes, 0.0f, z, nb);
  sgemm(false, true, mb, nb, C, 1.0f, xg, C, W.f + v0 * C, C, 0.0f, z, nb);
}

// dXg (mb, C) += dz (mb, nb) · W[v0 : v0 + nb]
void head_dinput(float* dxg, const float* dz, const HeadWeight& W, i64 v0, i64 mb, i64 nb, i64 C) {
  if (W.q) return sgemm_quant_b(false, false, mb, C, nb, 1.0f, dz, nb, W.q + v0 * W.rowBytes, W.type, W.rowBytes, 1.0f, dxg, C);
  sgemm(false, false, mb, C, nb, 1.0f, dz, nb, W.f + v0 * C, C, 1.0f, dxg, C);
}

void gather_rows(float* xg, const float* x, const int32_t* row, i64 mb, i64 C) {
  parallel_ranges(mb, mb * C, [&](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1; i++) std::memcpy(xg + i * C, x + static_cast<i64>(row[i]) * C, sizeof(float) * C);
  });
}

// softcap > 0 caps each tile of logits in place before it is folded in, so every statistic sees the capped logits.
void head_forward(const HeadStats& out, const float* x, const int32_t* rows, const int32_t* targets, const HeadWeight& W,
                  i64 M, i64 C, i64 V, float softcap) {
  HeadScratch& hs = head_scratch();
  const i64 rowBlock = std::min(M, head_row_block());
  float* xg = grow(hs.xg, rowBlock * C);
  float* z = grow(hs.z, rowBlock * kVocabTile);
  float* runMax = grow(hs.runMax, rowBlock);
  int32_t* runArgmax = grow(hs.runArgmax, rowBlock);
  float* targetLogit = grow(hs.targetLogit, rowBlock);
  double* sumExp = grow(hs.sumExp, rowBlock);
  double* sumExp2 = grow(hs.sumExp2, rowBlock);
  double* sumExpShift = grow(hs.sumExpShift, rowBlock);
  double* sumZ = grow(hs.sumZ, rowBlock);
  for (i64 m0 = 0; m0 < M; m0 += rowBlock) {
    const i64 mb = std::min(rowBlock, M - m0);
    gather_rows(xg, x, rows + m0, mb, C);
    std::fill(runMax, runMax + mb, -INFINITY);
    std::fill(runArgmax, runArgmax + mb, 0);
    std::fill(sumExp, sumExp + mb, 0.0);
    std::fill(sumExp2, sumExp2 + mb, 0.0);
    std::fill(sumExpShift, sumExpShift + mb, 0.0);
    std::fill(sumZ, sumZ + mb, 0.0);
    for (i64 v0 = 0; v0 < V; v0 += kVocabTile) {
      const i64 nb = std::min(kVocabTile, V - v0);
      head_logits(z, xg, W, v0, mb, nb, C);
      parallel_ranges(mb, mb * nb, [&](i64 r0, i64 r1) {
        if (softcap > 0) g_simd->softcap_range(z + r0 * nb, (r1 - r0) * nb, softcap);
        g_simd->lm_head_tile_stats(z, nb, v0, targets + m0, r0, r1, runMax, runArgmax, sumExp, sumExp2, sumExpShift,
                                   sumZ, targetLogit);
      });
    }
    for (i64 i = 0; i < mb; i++) {
      const i64 m = m0 + i;
      const double logSumExp = std::log(sumExp[i]), l = runMax[i] + logSumExp;
      out.lse[m] = static_cast<float>(l);
      out.logitSum[m] = static_cast<float>(sumZ[i]);
      out.logp[m] = static_cast<float>(targetLogit[i] - l);
      if (out.logSumSq) out.logSumSq[m] = static_cast<float>(std::log(sumExp2[i]) - 2 * logSumExp);  // Σp² = Σe²/(Σe)²
      if (out.entropy) out.entropy[m] = static_cast<float>(logSumExp - sumExpShift[i] / sumExp[i]);
      if (out.argmax) out.argmax[m] = runArgmax[i];
    }
  }
}

// Rows whose dlogp is 0 (masked positions) contribute nothing and are left out before the gather.
void head_backward(float* dx, float* dW, const float* dlogp, const float* x, const int32_t* rows, const int32_t* targets,
                   const HeadWeight& W, const float* lse, i64 M, i64 C, i64 V, float softcap) {
  HeadScratch& hs = head_scratch();
  i64 live = 0;
  for (i64 m = 0; m < M; m++) live += dlogp[m] != 0;
  if (live == 0) return;
  int32_t* row = grow(hs.row, live);
  int32_t* target = grow(hs.target, live);
  float* g = grow(hs.g, live);
  float* lseLive = grow(hs.lse, live);
  for (i64 m = 0, j = 0; m < M; m++)
    if (dlogp[m] != 0) {
      row[j] = rows[m];
      target[j] = targets[m];
      g[j] = dlogp[m];
      lseLive[j++] = lse[m];
    }
  const i64 rowBlock = std::min(live, head_row_block());
  float* xg = grow(hs.xg, rowBlock * C);
  float* dxg = grow(hs.dxg, rowBlock * C);
  float* z = grow(hs.z, rowBlock * kVocabTile);
  for (i64 m0 = 0; m0 < live; m0 += rowBlock) {
    const i64 mb = std::min(rowBlock, live - m0);
    gather_rows(xg, x, row + m0, mb, C);
    std::fill(dxg, dxg + mb * C, 0.0f);
    for (i64 v0 = 0; v0 < V; v0 += kVocabTile) {
      const i64 nb = std::min(kVocabTile, V - v0);
      head_logits(z, xg, W, v0, mb, nb, C);  // z = Xg · Wtᵀ
      parallel_ranges(mb, mb * nb, [&](i64 r0, i64 r1) {
        if (softcap > 0)
          g_simd->lm_head_tile_grad_softcap(z, nb, v0, g + m0, target + m0, lseLive + m0, r0, r1, softcap);
        else
          g_simd->lm_head_tile_grad(z, nb, v0, g + m0, target + m0, lseLive + m0, r0, r1);
      });
      head_dinput(dxg, z, W, v0, mb, nb, C);                                             // dXg += dz · Wt
      if (dW) sgemm(true, false, nb, C, mb, 1.0f, z, nb, xg, C, 1.0f, dW + v0 * C, C);  // dWt += dzᵀ · Xg
    }
    // rows may repeat: threads split the columns and add the rows in order
    parallel_ranges(C, mb * C, [&](i64 c0, i64 c1) {
      for (i64 i = 0; i < mb; i++) {
        float* __restrict d = dx + static_cast<i64>(row[m0 + i]) * C;
        const float* __restrict s = dxg + i * C;
        for (i64 c = c0; c < c1; c++) d[c] += s[c];
      }
    });
  }
}

}  // namespace

void lm_head_logprob_forward(const HeadStats& out, const float* x, const int32_t* rows, const int32_t* targets,
                             const float* W, i64 M, i64 C, i64 V, float softcap) {
  head_forward(out, x, rows, targets, HeadWeight{W, nullptr, 0, 0}, M, C, V, softcap);
}

void lm_head_logprob_backward(float* dx, float* dW, const float* dlogp, const float* x, const int32_t* rows,
                              const int32_t* targets, const float* W, const float* lse, i64 M, i64 C, i64 V,
                              float softcap) {
  head_backward(dx, dW, dlogp, x, rows, targets, HeadWeight{W, nullptr, 0, 0}, lse, M, C, V, softcap);
}

void lm_head_logprob_forward_quant(const HeadStats& out, const float* x, const int32_t* rows, const int32_t* targets,
                                   const uint8_t* W, int type, i64 M, i64 C, i64 V, float softcap) {
  head_forward(out, x, rows, targets, HeadWeight{nullptr, W, type, quant_row_bytes(type, C)}, M, C, V, softcap);
}

void lm_head_logprob_backward_quant(float* dx, const float* dlogp, const float* x, const int32_t* rows,
                                    const int32_t* targets, const uint8_t* W, int type, const float* lse, i64 M, i64 C,
                                    i64 V, float softcap) {
  head_backward(dx, nullptr, dlogp, x, rows, targets, HeadWeight{nullptr, W, type, quant_row_bytes(type, C)}, lse, M,
                C, V, softcap);
}

i64 quant_row_bytes(int type, i64 cols) {
  const i64 be = ggml_quant::block_elems(type), bb = ggml_quant::block_bytes(type);
  return be > 0 && cols % be == 0 ? cols / be * bb : 0;
}

bool dequantize_rows(float* dst, const uint8_t* src, int type, i64 rows, i64 cols) {
  const i64 rb = quant_row_bytes(type, cols);
  if (rb == 0) return false;
  // Rows are independent: split them across the pool (a panel of 64 rows of 576 is ~37k elements).
  parallel_ranges(rows, rows * cols, [&](i64 lo, i64 hi) {
    for (i64 r = lo; r < hi; r++) gemm_dequant_row(type, src + r * rb, dst + r * cols, cols);
  });
  return true;
}

void adamw_step(float* params, const float* grads, float* m, float* v, i64 n, double lr, double beta1, double beta2,
                double eps, double weightDecay, double step) {
  const double bc1 = 1 - std::pow(beta1, step), bc2 = 1 - std::pow(beta2, step);
  const double stepSize = lr / bc1, bc2Sqrt = std::sqrt(bc2), decay = 1 - lr * weightDecay;
  parallel_ranges(n, n, [&](i64 i0, i64 i1) {
    g_simd->adamw_range(params, grads, m, v, i0, i1, decay, beta1, beta2, stepSize, bc2Sqrt, eps);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Machine peak

namespace {
volatile float g_fma_sink;  // where the FMA chains' results go, so they must be computed

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
}  // namespace

// Each thread's rate is its flops over its own CPU time, not over the wall clock: on a shared machine a thread that
// waits for a core would otherwise lower the peak, which is what the core does while it runs. (Two threads on the
// two hyperthreads of one core each see full CPU time and half the FMA pipes, so the sum stays right; only more of
// our threads than logical CPUs would count one core twice, hence the cap.)
double fma_peak_gflops(double ms) {
  using Clock = std::chrono::steady_clock;
  constexpr i64 kBurst = 1 << 14;  // ~200k FMA: tens of µs per burst, so the clocks are read rarely
  const int nt = par::threads();
  std::vector<double> rate(static_cast<size_t>(nt), 0.0);
  par::run(nt, [&](const par::Team& team) {
    float sink = 0;
    const float seed = static_cast<float>(team.id) * 1e-3f;
    g_simd->fma_burst(kBurst, seed, &sink);  // warm-up: wide units and clocks ramp up on first use
    i64 flops = 0;
    const Clock::time_point wall0 = Clock::now();
    const double cpu0 = thread_cpu_seconds();
    do flops += g_simd->fma_burst(kBurst, seed + sink * 1e-9f, &sink);
    while (std::chrono::duration<double>(Clock::now() - wall0).count() * 1e3 < ms);
    const double cpu = thread_cpu_seconds() - cpu0;
    g_fma_sink = sink;
    if (cpu > 0) rate[static_cast<size_t>(team.id)] = static_cast<double>(flops) / cpu * 1e-9;
  });
  double total = 0;
  for (double r : rate) total += r;
  const int procs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return nt > procs ? total * procs / nt : total;
}

}  // namespace tsdpo
