// The kernels GPT-2 adds: LayerNorm with bias (torch.nn.LayerNorm: the biased variance, mean and rstd saved) and the
// plain, non-gated tanh GELU (HF gelu_new).
//
// js: LayerNorm against values worked out by hand on a small row and against its defining property (the normalised
// output x̂ = (y − b)/w has mean 0 and variance 1 per row, up to eps), gelu against the tanh form written out and
// against GeGLU with up = 1 bit for bit (the same expressions), every backward against central finite differences
// in float64, with null gradient outputs skipped and gradients accumulated (+=).
// native: each kernel against the float64 reference on the same float32 inputs, on every instruction set this CPU
// runs, on 1 to 3 threads (the same bits on each). LayerNorm's reference keeps mean and rstd in Float32Arrays, as
// native does, so both normalise with the same stored statistics: the forward is then one rounding of a double
// (1e-7 relative plus 1e-7 of the row scale), the backward sums of C products (test/native.test.ts's 1e-5 relative to
// the scale of the terms that cancel).

import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Buf } from "../src/backend/contract.js";
import { jsBackend, referenceBackend as ref } from "../src/backend/js/kernels.js";
import { loadNative, SIMD_LEVELS } from "../src/backend/native/index.js";
import { assertAllClose, checkGradients, nativeSimdRuns, rng } from "./helpers.js";

const u = 2 ** -24;
const f64 = (n: number, r: () => number, scale = 1, offset = 0): Float64Array => Float64Array.from({ length: n }, () => offset + (r() * 2 - 1) * scale);
const f32 = (n: number, r: () => number, scale = 1, offset = 0): Float32Array => Float32Array.from({ length: n }, () => offset + (r() * 2 - 1) * scale);
const wide = (a: Float32Array): Float64Array => Float64Array.from(a);
const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
function bitEqual(got: Buf, want: Buf, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) assert.fail(`${what}: element ${i} is ${got[i]} vs ${want[i]}`);
}
/** gelu_tanh written out as torch's approximate="tanh" states it (the kernels use the equivalent sigmoid form). */
const geluTanhForm = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

// ---------------------------------------------------------------------------------------------------------------
// js: LayerNorm

test("js LayerNorm by hand: [1, 2, 3, 4] has mean 2.5 and biased variance 1.25; with w and b, y = x̂·w + b", () => {
  const inp = Float64Array.of(1, 2, 3, 4), N = 1, C = 4;
  const out = new Float64Array(C), mean = new Float64Array(N), rstd = new Float64Array(N);
  // eps 0: x̂ = (x − 2.5)/√1.25 = (∓1.5, ∓0.5)/√1.25 (torch's biased variance; the unbiased one would be 5/3)
  ref.layernormForward(out, mean, rstd, inp, Float64Array.of(1, 1, 1, 1), null, N, C, 0);
  assert.equal(mean[0], 2.5);
  assert.ok(Math.abs(rstd[0]! - 1 / Math.sqrt(1.25)) < 1e-15, `rstd ${rstd[0]}`);
  const hand = [-1.3416407864998738, -0.4472135954999579, 0.4472135954999579, 1.3416407864998738];
  for (let c = 0; c < C; c++) assert.ok(Math.abs(out[c]! - hand[c]!) < 1e-15, `x̂[${c}] = ${out[c]}, by hand ${hand[c]}`);
  // eps enters under the root: rstd = 1/√(1.25 + eps)
  ref.layernormForward(out, mean, rstd, inp, Float64Array.of(1, 1, 1, 1), null, N, C, 0.75);
  assert.ok(Math.abs(rstd[0]! - 1 / Math.sqrt(2)) < 1e-15, `rstd with eps ${rstd[0]}`);
  // the affine part: y_c = x̂_c·w_c + b_c
  const w = Float64Array.of(2, -1, 0.5, 3), b = Float64Array.of(0.25, 1, -2, 0);
  ref.layernormForward(out, mean, rstd, inp, w, b, N, C, 0);
  for (let c = 0; c < C; c++) assert.ok(Math.abs(out[c]! - (hand[c]! * w[c]! + b[c]!)) < 1e-15, `y[${c}] = ${out[c]}`);
});

test("js LayerNorm: the normalised rows (y − b)/w have mean 0 and variance 1 (up to eps); bias null is no bias; Float32 buffers", () => {
  const r = rng(600);
  for (const [N, C, scale, offset] of [[1, 2, 1, 0], [3, 7, 3, 2], [4, 17, 1e3, -5e3], [2, 64, 1e-2, 1]] as const) {
    const inp = f64(N * C, r, scale, offset), w = f64(C, r, 1, 2), b = f64(C, r);
    const out = new Float64Array(N * C), mean = new Float64Array(N), rstd = new Float64Array(N);
    const eps = 1e-12 * scale * scale; // far below the variance: x̂'s variance is 1 to ~1e-12
    ref.layernormForward(out, mean, rstd, inp, w, b, N, C, eps);
    for (let n = 0; n < N; n++) {
      const xhat = Array.from({ length: C }, (_, c) => (out[n * C + c]! - b[c]!) / w[c]!);
      const mu = xhat.reduce((s, x) => s + x, 0) / C;
      const v = xhat.reduce((s, x) => s + (x - mu) ** 2, 0) / C;
      assert.ok(Math.abs(mu) < 1e-12, `row ${n} ${N}x${C}: mean of x̂ ${mu}`);
      assert.ok(Math.abs(v - 1) < 1e-10, `row ${n} ${N}x${C}: variance of x̂ ${v}`);
      const xs = Array.from(inp.subarray(n * C, (n + 1) * C));
      const m = xs.reduce((s, x) => s + x, 0) / C;
      assert.ok(Math.abs(mean[n]! - m) <= 1e-15 * Math.max(Math.abs(m), scale), `saved mean row ${n}`);
      const sd = Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / C + eps);
      assert.ok(Math.abs(rstd[n]! * sd - 1) < 1e-12, `saved rstd row ${n}`);
    }
    const noBias = new Float64Array(N * C), zeroBias = new Float64Array(N * C);
    ref.layernormForward(noBias, mean, rstd, inp, w, null, N, C, eps);
    ref.layernormForward(zeroBias, mean, rstd, inp, w, new Float64Array(C), N, C, eps);
    assertAllClose(noBias, zeroBias, 0, 0, `bias null vs zeros ${N}x${C}`);
  }
  // on Float32Array the saved statistics are rounded to float32, and the output uses the rounded ones
  const inp = f32(7, r, 3, 2), w = f32(7, r), b = f32(7, r);
  const out = new Float32Array(7), mean = new Float32Array(1), rstd = new Float32Array(1), out64 = new Float64Array(7);
  ref.layernormForward(out, mean, rstd, inp, w, b, 1, 7, 1e-5);
  for (let c = 0; c < 7; c++) out64[c] = (inp[c]! - mean[0]!) * rstd[0]! * w[c]! + b[c]!;
  assertAllClose(out, Float32Array.from(out64), 0, 0, "float32 layernorm from its stored mean and rstd");
});

test("the js backend runs the reference LayerNorm and GELU (fast.ts has no versions of them)", () => {
  for (const k of ["layernormForward", "layernormBackward", "geluForward", "geluBackward"] as const) assert.equal(jsBackend[k], ref[k], k);
});

test("js LayerNorm backward by finite differences (dinp, dweight, dbias); null gradients are skipped; gradients accumulate", (t) => {
  const r = rng(610);
  let fd = 0;
  for (const [N, C, offset] of [[1, 1, 0], [2, 2, 0.5], [3, 7, 2], [4, 17, -3]] as const) {
    const inp = f64(N * C, r, 3, offset), weight = f64(C, r, 1, 1), bias = f64(C, r);
    const out = new Float64Array(N * C), mean = new Float64Array(N), rstd = new Float64Array(N);
    const eps = 1e-5;
    const fwd = (): Float64Array => (ref.layernormForward(out, mean, rstd, inp, weight, bias, N, C, eps), out);
    const grads = (d: Float64Array, init = 0, which = { w: true, b: true }): { inp: Float64Array; weight: Float64Array | null; bias: Float64Array | null } => {
      fwd();
      const g = { inp: new Float64Array(N * C).fill(init), weight: which.w ? new Float64Array(C).fill(init) : null, bias: which.b ? new Float64Array(C).fill(init) : null };
      ref.layernormBackward(g.inp, g.weight, g.bias, d, inp, weight, mean, rstd, N, C);
      return g;
    };
    fd = Math.max(fd, checkGradients(`layernorm ${N}x${C}`, { inp, weight, bias }, fwd, (d) => {
      const g = grads(d);
      return { inp: g.inp, weight: g.weight!, bias: g.bias! };
    }, r));
    const d = f64(N * C, r);
    const full = grads(d);
    // dweight and dbias null: dinp unchanged, and each alone gives its own gradient
    for (const which of [{ w: false, b: false }, { w: true, b: false }, { w: false, b: true }]) {
      const g = grads(d, 0, which);
      assertAllClose(g.inp, full.inp, 0, 0, `dinp with dweight ${which.w} dbias ${which.b}`);
      if (g.weight) assertAllClose(g.weight, full.weight!, 0, 0, "dweight alone");
      if (g.bias) assertAllClose(g.bias, full.bias!, 0, 0, "dbias alone");
    }
    // accumulation: starting from 0.5 everywhere adds the same gradients to it
    const acc = grads(d, 0.5);
    for (const k of ["inp", "weight", "bias"] as const)
      assertAllClose(acc[k]!, full[k]!.map((x) => x + 0.5), 1e-15, 1e-15, `d${k} accumulates`);
  }
  t.diagnostic(`max |analytic − finite difference| ${fd.toExponential(2)}`);
});

// ---------------------------------------------------------------------------------------------------------------
// js: GELU

test("js GELU equals the tanh form written out, and GeGLU with up = 1 bit for bit (forward and gradient), in float64 and float32", () => {
  const r = rng(620);
  const n = 501;
  const x = f64(n, r, 6);
  [0, 1, -1, 5.5, -5.5, 30, -30, 1e-4, -0.0].forEach((v, i) => (x[i] = v));
  const out = new Float64Array(n);
  ref.geluForward(out, x, n);
  assert.ok(Math.abs(out[1]! - 0.8411919906082768) < 1e-15, `gelu(1) = ${out[1]}`); // torch.nn.functional.gelu(1., approximate="tanh")
  for (let i = 0; i < n; i++) {
    // the tanh form cancels for negative x (1 + tanh u → 0): compare where it is accurate, relative to its size
    if (x[i]! < -3) continue;
    const want = geluTanhForm(x[i]!);
    assert.ok(Math.abs(out[i]! - want) <= 1e-15 + 1e-14 * Math.abs(want), `gelu(${x[i]}) = ${out[i]}, tanh form ${want}`);
  }
  for (const ctor of [Float64Array, Float32Array]) {
    const xs = ctor.from(x), ones = new ctor(n).fill(1), dout = ctor.from(f64(n, r, 3));
    const a = new ctor(n), b = new ctor(n);
    ref.geluForward(a, xs, n);
    ref.gegluForward(b, xs, ones, n);
    bitEqual(a, b, `${ctor.name} gelu(x) vs geglu(x, 1)`);
    const inPlace = ctor.from(xs);
    ref.geluForward(inPlace, inPlace, n);
    bitEqual(inPlace, a, `${ctor.name} gelu in place`);
    const dinp = ctor.from(f64(n, rng(1))), dgate = ctor.from(dinp), dup = new ctor(n);
    ref.geluBackward(dinp, dout, xs, n);
    ref.gegluBackward(dgate, dup, dout, xs, ones, n);
    bitEqual(dinp, dgate, `${ctor.name} gelu' vs geglu's dgate with up = 1`);
  }
});

test("js GELU backward by finite differences, |x| up to 12; it accumulates", (t) => {
  const r = rng(630);
  const n = 64;
  const inp = f64(n, r, 12);
  [0, 1e-3, -1e-3, 0.5, -0.5, 3, -3].forEach((v, i) => (inp[i] = v));
  const out = new Float64Array(n);
  const fd = checkGradients("gelu", { inp }, () => (ref.geluForward(out, inp, n), out), (d) => {
    const g = new Float64Array(n);
    ref.geluBackward(g, d, inp, n);
    return { inp: g };
  }, r);
  const d = f64(n, r), g0 = new Float64Array(n), g1 = new Float64Array(n).fill(-2);
  ref.geluBackward(g0, d, inp, n);
  ref.geluBackward(g1, d, inp, n);
  assertAllClose(g1, g0.map((x) => x - 2), 1e-15, 1e-15, "gelu dinp accumulates");
  t.diagnostic(`max |analytic − finite difference| ${fd.toExponential(2)}`);
});

// ---------------------------------------------------------------------------------------------------------------
// Native against the float64 reference, on every instruction set this CPU runs, on 1 to 3 threads

const native = loadNative();
const skip = native.ok ? false : `native addon not available: ${native.reason}`;
const nb = (native.ok ? native.backend : null) as Backend;
const threadCounts = native.ok ? [...new Set([1, 2, 3, native.info().threads])] : [1];
function withThreads<T>(n: number, fn: () => T): T {
  if (!native.ok) return fn();
  const before = native.info().threads;
  native.setThreads(n);
  try {
    return fn();
  } finally {
    native.setThreads(before);
  }
}
function close(got: Buf, want: Buf, what: string, rel = 1e-5): number {
  assertAllClose(got, want, rel * maxAbs(want), rel, what);
  return maxDiff(got, want) / Math.max(maxAbs(want), 1e-30);
}
const best = native.ok ? native.info().simd : "portable";

// N, C, |x|, mean offset. 41×1031 is past the size where kernels split rows (and columns) between threads.
// eps is a float32 value, as the addon rounds it (torch's float32 LayerNorm does too), so both sides add the same eps.
const eps32 = Math.fround(1e-5);
const layernormShapes = [[1, 1, 1, 0], [3, 7, 1e4, 0], [5, 17, 1e-3, 0], [2, 33, 1, 100], [4, 576, 300, -50], [1, 1031, 1, 0], [41, 1031, 3, 1]] as const;

for (const level of SIMD_LEVELS) {
  const skipFor = { skip: skip || (nativeSimdRuns(level) ? false : `this CPU cannot run the ${level} loops`) };
  const useSimd = (): void => void (native.ok && assert.ok(native.setSimd(level), level));

  test(`[${level}] native LayerNorm forward (bias or none) and backward (each of dweight, dbias or neither) on odd widths, ${threadCounts.join(", ")} threads`, skipFor, (t) => {
    useSimd();
    const worst = { stats: 0, out: 0, dinp: 0, dparams: 0 };
    const r = rng(700);
    for (const [N, C, scale, offset] of layernormShapes) {
      const inp = f32(N * C, r, scale, offset), w = f32(C, r, 2), b = f32(C, r, 3), dout = f32(N * C, r, 5);
      const d0 = [f32(N * C, r), f32(C, r), f32(C, r)];
      const at = `${N}x${C} |x| ${scale} offset ${offset}`;
      for (const bias of [b, null]) {
        // the reference normalises with float32-stored mean and rstd, as native does
        const mean32 = new Float32Array(N), rstd32 = new Float32Array(N), out64 = new Float64Array(N * C);
        ref.layernormForward(out64, mean32, rstd32, wide(inp), wide(w), bias && wide(bias), N, C, eps32);
        let first: Float32Array[] | null = null;
        for (const threads of threadCounts) {
          const out = new Float32Array(N * C).fill(NaN), mean = new Float32Array(N).fill(NaN), rstd = new Float32Array(N).fill(NaN);
          withThreads(threads, () => nb.layernormForward(out, mean, rstd, inp, w, bias, N, C, eps32));
          const what = `${at} bias ${bias ? "yes" : "null"}, ${threads} threads`;
          assertAllClose(mean, mean32, 2 * u * maxAbs(inp), 2 * u, `mean ${what}`);
          assertAllClose(rstd, rstd32, 0, 2 * u, `rstd ${what}`);
          worst.stats = Math.max(worst.stats, maxDiff(mean, mean32) / maxAbs(inp), maxDiff(rstd, rstd32) / maxAbs(rstd32));
          assertAllClose(out, out64, 1e-7 * maxAbs(out64), 1e-7, `out ${what}`);
          worst.out = Math.max(worst.out, maxDiff(out, out64) / Math.max(maxAbs(out64), 1e-30));
          if (first) [out, mean, rstd].forEach((a, i) => bitEqual(a, first![i]!, `forward output ${i} ${what} vs 1 thread`));
          first ??= [out, mean, rstd];
        }
      }
      // backward from native's own mean and rstd (with bias: it does not enter the backward)
      const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
      nb.layernormForward(out, mean, rstd, inp, w, b, N, C, eps32);
      const g64 = d0.map(wide);
      ref.layernormBackward(g64[0]!, g64[1]!, g64[2]!, wide(dout), wide(inp), wide(w), wide(mean), wide(rstd), N, C);
      // dx = r (g − mean(g) − x̂ mean(g x̂)) cancels (completely when C = 1): the error scale is that of its terms
      let terms = 0;
      for (let n = 0; n < N; n++) {
        let sg = 0, sgx = 0;
        for (let c = 0; c < C; c++) {
          const g = dout[n * C + c]! * w[c]!;
          sg += g;
          sgx += g * (inp[n * C + c]! - mean[n]!) * rstd[n]!;
        }
        for (let c = 0; c < C; c++) {
          const xhat = (inp[n * C + c]! - mean[n]!) * rstd[n]!;
          terms = Math.max(terms, rstd[n]! * (Math.abs(dout[n * C + c]! * w[c]!) + Math.abs(sg / C) + Math.abs((xhat * sgx) / C)));
        }
      }
      const dinpScale = Math.max(terms, maxAbs(g64[0]!));
      let first: Float32Array[] | null = null;
      for (const threads of threadCounts) {
        for (const [withW, withB] of [[true, true], [false, false], [true, false], [false, true]] as const) {
          const g = d0.map((a) => Float32Array.from(a));
          withThreads(threads, () => nb.layernormBackward(g[0]!, withW ? g[1]! : null, withB ? g[2]! : null, dout, inp, w, mean, rstd, N, C));
          const what = `${at}, dweight ${withW} dbias ${withB}, ${threads} threads`;
          assertAllClose(g[0]!, g64[0]!, 1e-5 * dinpScale, 1e-5, `dinp ${what}`);
          worst.dinp = Math.max(worst.dinp, maxDiff(g[0]!, g64[0]!) / dinpScale);
          if (withW) worst.dparams = Math.max(worst.dparams, close(g[1]!, g64[1]!, `dweight ${what}`));
          else bitEqual(g[1]!, d0[1]!, `dweight untouched ${what}`);
          if (withB) worst.dparams = Math.max(worst.dparams, close(g[2]!, g64[2]!, `dbias ${what}`));
          else bitEqual(g[2]!, d0[2]!, `dbias untouched ${what}`);
          if (withW && withB) {
            if (first) g.forEach((a, i) => bitEqual(a, first![i]!, `gradient ${i} ${what} vs 1 thread`));
            first ??= g;
          } else if (first) bitEqual(g[0]!, first[0]!, `dinp ${what} vs with both`);
        }
      }
    }
    t.diagnostic(
      `max |native − reference|: mean/rstd ${worst.stats.toExponential(2)}, out ${worst.out.toExponential(2)} (relative to max|·|), ` +
        `dinp ${worst.dinp.toExponential(2)} (to its terms), dweight/dbias ${worst.dparams.toExponential(2)} (to max|·|)`,
    );
  });

  test(`[${level}] native GELU forward (also in place) and backward on odd lengths, |x| up to 100; the bits of GeGLU with up = 1; ${threadCounts.join(", ")} threads`, skipFor, (t) => {
    useSimd();
    let worstOut = 0, worstGrad = 0, worstGradAbs = 0;
    const r = rng(800);
    for (const n of [1, 3, 7, 17, 33, 1031, 40009]) {
      const inp = f32(n, r, 8), dout = f32(n, r, 3), d0 = f32(n, r);
      for (const [i, g] of [30, -30, 100, -100, 0, 5.5, -5.5, 1e-4].entries()) if (i < n) inp[i] = g;
      const out64 = new Float64Array(n), dinp64 = wide(d0);
      ref.geluForward(out64, wide(inp), n);
      ref.geluBackward(dinp64, wide(dout), wide(inp), n);
      const ones = new Float32Array(n).fill(1);
      const gegluOut = new Float32Array(n), dgate = Float32Array.from(d0), dup = new Float32Array(n);
      nb.gegluForward(gegluOut, inp, ones, n);
      nb.gegluBackward(dgate, dup, dout, inp, ones, n);
      for (const threads of threadCounts) {
        const out = new Float32Array(n).fill(NaN), dinp = Float32Array.from(d0);
        withThreads(threads, () => {
          nb.geluForward(out, inp, n);
          nb.geluBackward(dinp, dout, inp, n);
        });
        const what = `n=${n}, ${threads} threads`;
        // as GeGLU's (gemma-kernels.test.ts): float32 rounds σ's exponent 2u, which exp turns into ~2u·|2u| relative
        for (let i = 0; i < n; i++) {
          const g = inp[i]!, arg = Math.abs(2 * Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3));
          const tol = 1e-30 + Math.abs(out64[i]!) * (1e-6 + 8 * u * arg);
          if (!(Math.abs(out[i]! - out64[i]!) <= tol)) assert.fail(`gelu fwd ${what}: gelu(${g}) is ${out[i]}, reference ${out64[i]}`);
          worstOut = Math.max(worstOut, Math.abs(out[i]! - out64[i]!) / tol);
        }
        // gelu' = s + 2g·s(1 − s)·du in float32, s = 1/(1 + e): rounding 1 + e (≤ u) and the quotient (≤ u/2) leaves
        // 1 − s an absolute error up to 1.5u (all of 1 − s when s rounds to 1, for large x; GeGLU's dgate shares it),
        // which 2|g|·|du| scales: twice that, plus 8u of dout for the rest
        for (let i = 0; i < n; i++) {
          const g = inp[i]!, du = Math.sqrt(2 / Math.PI) * (1 + 3 * 0.044715 * g * g);
          const tol = 1e-6 * Math.abs(dinp64[i]!) + Math.abs(dout[i]!) * u * (8 + 6 * Math.abs(g * du));
          const err = Math.abs(dinp[i]! - dinp64[i]!);
          if (!(err <= tol)) assert.fail(`gelu dinp ${what}: at x = ${g} it is ${dinp[i]}, reference ${dinp64[i]}`);
          worstGrad = Math.max(worstGrad, err / tol);
          worstGradAbs = Math.max(worstGradAbs, err);
        }
        bitEqual(out, gegluOut, `gelu(x) vs geglu(x, 1) ${what}`);
        bitEqual(dinp, dgate, `gelu' vs geglu's dgate with up = 1 ${what}`);
        const inPlace = Float32Array.from(inp);
        withThreads(threads, () => nb.geluForward(inPlace, inPlace, n));
        bitEqual(inPlace, out, `gelu in place ${what}`);
      }
    }
    t.diagnostic(
      `max |native − reference|: forward ${worstOut.toExponential(2)} of its tolerance; dinp ${worstGrad.toExponential(2)} of its tolerance, ` +
        `|Δdinp| ${worstGradAbs.toExponential(2)} (|dout| ≤ 3)`,
    );
  });
}

test("native: the best instruction set is restored; bad LayerNorm and GELU arguments are exceptions, not accesses past a buffer", { skip }, () => {
  if (!native.ok) return;
  assert.ok(native.setSimd(best));
  const a = new Float32Array(6), two = new Float32Array(2);
  assert.throws(() => nb.layernormForward(a, two, two, a, a, new Float32Array(2), 2, 3, 1e-5), /layernormForward: bias has 2 elements but the sizes need 3/);
  assert.throws(() => nb.layernormForward(a, new Float32Array(1), two, a, a, null, 2, 3, 1e-5), /layernormForward: mean has 1 elements but the sizes need 2/);
  assert.throws(() => nb.layernormForward(a, two, two, a, a, null, 2, 0, 1e-5), /C must be an integer >= 1/);
  assert.throws(() => nb.layernormForward(a, two, two, new Float64Array(6), a, null, 2, 3, 1e-5), /inp is a Float64Array: the native backend computes in float32 only/);
  assert.throws(() => nb.layernormBackward(a, null, new Float32Array(2), a, a, a, two, two, 2, 3), /layernormBackward: dbias has 2 elements but the sizes need 3/);
  assert.throws(() => nb.layernormBackward(a, null, null, a, a, a, two, new Float32Array(1), 2, 3), /layernormBackward: rstd has 1 elements but the sizes need 2/);
  assert.throws(() => nb.geluForward(a, new Float32Array(5), 6), /geluForward: inp has 5 elements but the sizes need 6/);
  assert.throws(() => nb.geluBackward(a, a, a, 6.5), /geluBackward: n must be an integer/);
  assert.throws(() => nb.geluBackward(a, new Float32Array(5), a, 6), /geluBackward: dout has 5 elements but the sizes need 6/);
});
