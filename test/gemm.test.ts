// tsdpo's own GEMM (src/backend/native/gemm.cc) against a plain float64 triple loop, on every micro-kernel this CPU
// can run (AVX-512, AVX2+FMA and the portable C++ one, which TSDPO_SIMD=portable also forces), every transposition,
// 1, 2 and 3 threads, and shapes chosen to land on and just off every boundary of the blocking: the micro-tile
// (MR × NR), the packed depth KC (with several KC blocks in both of the GEMM's thread splits: rows when M ≥ N,
// columns otherwise), the L2 block of rows (mc), the shared and private packing spans, plus 1 × 1 × 1,
// one row against a wide matrix, primes and K = 0.
//
// The error bound is rigorous, not a tuned tolerance: a float32 sum of K products accumulated in any order (with or
// without FMA), then scaled by alpha and added to beta·C, is within (K + 3)·u·(|alpha|·Σ_k |a_ik·b_kj| + |beta·c_ij|)
// of the exact value, u = 2^-24. A wrong index, a missed or doubled k block, a lost edge row or column, or beta applied
// twice is an O(1) error and fails it.
//
// Determinism: two calls give the same bits, and so do 1, 2 and 3 threads, and a block of rows computed alone gives
// the bits it gets inside the whole product (K is never split between threads; see gemm.h).

import { test } from "node:test";
import assert from "node:assert/strict";
import { SIMD_LEVELS, loadNative, type Sgemm } from "../src/backend/native/index.js";
import { nativeSimdRuns, rng, testBackendName } from "./helpers.js";

const native = loadNative();
// The native pass of `npm test` runs these (the js pass has nothing of its own to check here).
const skip = testBackendName === "js" ? "the GEMM is native: tested in the native pass" :
  native.ok ? false : `native addon not available: ${native.reason}`;
const sgemm = (native.ok ? native.sgemm : null) as Sgemm;
const U = 2 ** -24;

interface Case {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
  pad: number; // extra elements at the end of every stored row (leading dimension > row length)
}

interface Operands {
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  lda: number;
  ldb: number;
  ldc: number;
}

function operands(c: Case, seed: number): Operands {
  const r = rng(seed);
  const lda = (c.transA ? c.M : c.K) + c.pad, ldb = (c.transB ? c.K : c.N) + c.pad, ldc = c.N + c.pad;
  const fill = (n: number): Float32Array => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const A = fill((c.transA ? c.K : c.M) * lda), B = fill((c.transB ? c.N : c.K) * ldb), C = fill(c.M * ldc);
  if (c.beta === 0) C.fill(NaN); // beta = 0 must not read C: NaN · 0 would leak through
  return { A, B, C, lda, ldb, ldc };
}

/** The exact product (float64, from the float32 operands) and the error bound per element. */
function reference(c: Case, o: Operands): { want: Float64Array; bound: Float64Array } {
  const want = new Float64Array(c.M * c.N), bound = new Float64Array(c.M * c.N);
  for (let i = 0; i < c.M; i++)
    for (let j = 0; j < c.N; j++) {
      let dot = 0, mag = 0;
      for (let k = 0; k < c.K; k++) {
        const a = c.transA ? o.A[k * o.lda + i]! : o.A[i * o.lda + k]!;
        const b = c.transB ? o.B[j * o.ldb + k]! : o.B[k * o.ldb + j]!;
        dot += a * b;
        mag += Math.abs(a * b);
      }
      const old = c.beta === 0 ? 0 : c.beta * o.C[i * o.ldc + j]!;
      want[i * c.N + j] = c.alpha * dot + old;
      bound[i * c.N + j] = (c.K + 3) * U * (Math.abs(c.alpha) * mag + Math.abs(old)) + 1e-30;
    }
  return { want, bound };
}

function run(c: Case, o: Operands): Float32Array {
  const C = Float32Array.from(o.C);
  sgemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, o.A, o.lda, o.B, o.ldb, c.beta, C, o.ldc);
  return C;
}

function check(c: Case, seed: number, what: string, threads: readonly number[] = [0]): Float32Array {
  const o = operands(c, seed);
  const { want, bound } = reference(c, o);
  let got: Float32Array = new Float32Array(0);
  for (const t of threads) {
    if (t > 0 && native.ok) native.setThreads(t);
    got = run(c, o);
    compare(c, o, got, want, bound, t > 0 ? `${what} t=${t}` : what);
  }
  return got;
}

function compare(c: Case, o: Operands, got: Float32Array, want: Float64Array, bound: Float64Array, what: string): void {
  for (let i = 0; i < c.M; i++) {
    for (let j = 0; j < c.N; j++) {
      const g = got[i * o.ldc + j]!, w = want[i * c.N + j]!;
      if (!(Math.abs(g - w) <= bound[i * c.N + j]!))
        assert.fail(`${what}: C[${i}][${j}] = ${g}, exact ${w}, bound ±${bound[i * c.N + j]!.toExponential(2)}`);
    }
    // the padding past each row of C is never written
    for (let j = c.N; j < o.ldc; j++)
      if (!Object.is(got[i * o.ldc + j], o.C[i * o.ldc + j])) assert.fail(`${what}: wrote C[${i}][${j}], past N`);
  }
}

/** The blocking of the micro-kernel in use, from info().gemm ("avx512 12x32, kc 512, mc 252 at kc 512 (L2 1024 KiB)"). */
function blocking(): { MR: number; NR: number; KC: number; mc: number } {
  if (!native.ok) return { MR: 1, NR: 1, KC: 1, mc: 1 };
  const m = /^\w+ (\d+)x(\d+), kc (\d+), mc (\d+)/.exec(native.info().gemm);
  assert.ok(m, native.info().gemm);
  return { MR: Number(m[1]), NR: Number(m[2]), KC: Number(m[3]), mc: Number(m[4]) };
}

const defaultThreads = native.ok ? native.info().threads : 1;
const best = native.ok ? native.info().simd : "portable";
function withSettings<T>(level: string, threads: number, fn: () => T): T {
  if (!native.ok) return fn();
  assert.ok(native.setSimd(level as "avx2"), level);
  native.setThreads(threads);
  try {
    return fn();
  } finally {
    native.setThreads(defaultThreads);
    native.setSimd(best);
  }
}
const LAYOUTS = [[false, false], [false, true], [true, false], [true, true]] as const;
// Shared-packing spans of gemm.cc (kSharedSpan rows of A or columns of B; kPrivateSpan per thread).
const SHARED_SPAN = 2304, PRIVATE_SPAN = 1536;

for (const level of SIMD_LEVELS) {
  const skipLevel = { skip: skip || (nativeSimdRuns(level) ? false : `this CPU cannot run the ${level} micro-kernel`) };

  test(`[${level}] gemm: small, prime and tile-boundary shapes, all four layouts, alpha/beta, 1-3 threads`, skipLevel, () => {
    withSettings(level, 1, () => {
      const { MR, NR, KC } = blocking();
      const shapes: [number, number, number][] = [
        [1, 1, 1], [1, 1000, 7], [1000, 1, 5], [2, 3, 5], [7, 11, 13], [31, 37, 41], [97, 89, 83],
        [MR - 1, NR - 1, KC - 1], [MR, NR, KC], [MR + 1, NR + 1, KC + 1], [2 * MR - 1, 2 * NR + 1, 2 * KC + 1],
        [3 * MR + 1, 3 * NR - 1, 3 * KC - 1], [4 * NR + 5, NR + 3, 2 * KC + 1], [5 * MR - 1, 2 * MR, 3 * KC + 7],
      ];
      let n = 0;
      for (const [M, N, K] of shapes)
        for (const [transA, transB] of LAYOUTS)
          for (const [alpha, beta] of [[1, 0], [1, 1], [0.75, -0.5]] as const) {
            const c: Case = { M, N, K, transA, transB, alpha, beta, pad: n % 3 === 0 ? 3 : 0 };
            check(c, ++n, `${level} ${M}x${N}x${K} ${transA ? "T" : "N"}${transB ? "T" : "N"} a=${alpha} b=${beta}`, [1, 2, 3]);
          }
    });
  });

  test(`[${level}] gemm: K = 0 gives beta·C (zeros for beta = 0, C never read), and M or N = 0 writes nothing`, skipLevel, () => {
    withSettings(level, 2, () => {
      for (const [transA, transB] of LAYOUTS)
        for (const beta of [0, 1, 0.5]) {
          const c: Case = { M: 13, N: 35, K: 0, transA, transB, alpha: 1, beta, pad: 1 };
          const got = check(c, 7, `K=0 beta=${beta}`);
          if (beta === 0) for (let i = 0; i < 13; i++) for (let j = 0; j < 35; j++) assert.equal(got[i * 36 + j], 0);
        }
      const C = Float32Array.of(1, 2, 3);
      sgemm(false, false, 0, 3, 4, 1, new Float32Array(0), 4, new Float32Array(12), 3, 0, C, 3);
      sgemm(false, false, 1, 0, 4, 1, new Float32Array(4), 4, new Float32Array(0), 0, 0, C, 3);
      assert.deepEqual([...C], [1, 2, 3]);
    });
  });

  test(`[${level}] gemm: shapes one off the L2 row block and the shared and private packing spans`, skipLevel, () => {
    withSettings(level, 1, () => {
      const { mc, KC } = blocking();
      // Row slabs (M ≥ N) cross mc and the private span of A rows and the shared span of B columns; column slabs
      // (M < N) cross the shared span of A rows and the private span of B columns. mc is the L2 block at the deepest
      // kc, so those shapes have K = KC; elsewhere K stays small: the reference is a float64 triple loop.
      const shapes: [number, number, number][] = [
        [mc - 1, 9, KC], [mc + 1, 9, KC], [PRIVATE_SPAN + 1, 17, 3], [SHARED_SPAN + 1, SHARED_SPAN, 2],
        [3, PRIVATE_SPAN + 1, 4], [SHARED_SPAN + 1, SHARED_SPAN + 2, 2],
      ];
      let n = 100;
      for (const [M, N, K] of shapes) {
        const [transA, transB] = LAYOUTS[n % 4]!;
        check({ M, N, K, transA, transB, alpha: 1, beta: 1, pad: 0 }, ++n, `${level} ${M}x${N}x${K}`, [1, 2, 3]);
      }
    });
  });

  test(`[${level}] gemm is deterministic: same bits on every call, on 1, 2 and 3 threads, and for rows computed alone`, skipLevel, () => {
    withSettings(level, 1, () => {
      const { MR, KC } = blocking();
      // A step's shapes in small: a forward (NT), dinp (NN) and dW (TN), deep enough for several KC blocks.
      for (const [M, N, K, transA, transB] of [
        [61, 150, 2 * KC + 37, false, true], [150, 61, 3 * KC - 5, false, false], [200, 77, KC + 3, true, false],
      ] as const) {
        const c: Case = { M, N, K, transA, transB, alpha: 1, beta: 1, pad: 0 };
        const o = operands(c, M);
        native.ok && native.setThreads(1);
        const once = run(c, o);
        for (const threads of [1, 2, 3]) {
          native.ok && native.setThreads(threads);
          for (let rep = 0; rep < 2; rep++)
            assert.deepEqual(run(c, o), once, `${M}x${N}x${K}: ${threads} threads, call ${rep + 1}`);
        }
        // rows [r0, r0 + m) alone, with r0 and m off the micro-tile grid: the same bits as inside the whole product
        const r0 = MR + 1, m = 2 * MR + 3;
        const rowsA = transA
          ? Float32Array.from({ length: K * m }, (_, x) => o.A[Math.floor(x / m) * o.lda + r0 + (x % m)]!)
          : o.A.slice(r0 * o.lda, (r0 + m) * o.lda);
        const part = o.C.slice(r0 * o.ldc, (r0 + m) * o.ldc);
        sgemm(transA, transB, m, N, K, 1, rowsA, transA ? m : o.lda, o.B, o.ldb, 1, part, o.ldc);
        assert.deepEqual(part, once.slice(r0 * o.ldc, (r0 + m) * o.ldc), `${M}x${N}x${K}: rows ${r0}..${r0 + m} alone`);
      }
    });
  });
}

test("gemm: the addon refuses operands shorter than the sizes and leading dimensions say", { skip }, () => {
  const A = new Float32Array(12), B = new Float32Array(12), C = new Float32Array(9);
  assert.throws(() => sgemm(false, false, 3, 3, 4, 1, A.subarray(0, 11), 4, B, 3, 0, C, 3), /A has 11 elements but the sizes need 12/);
  assert.throws(() => sgemm(false, false, 3, 3, 4, 1, A, 3, B, 3, 0, C, 3), /leading dimension/);
  assert.throws(() => sgemm(false, true, 3, 3, 4, 1, A, 4, B, 4, 0, C.subarray(0, 8), 3), /C has 8 elements/);
});

test("the thread pool is the one this build was asked for", { skip: skip || (process.env.TSDPO_EXPECT_THREAD_POOL ? false : "set TSDPO_EXPECT_THREAD_POOL (CI's build without OpenMP does)") }, () => {
  assert.ok(native.ok);
  assert.equal(native.info().threadPool, process.env.TSDPO_EXPECT_THREAD_POOL);
});
