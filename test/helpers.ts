// Shared test utilities: the backend under test, an all-close matcher that reports where and by how much arrays
// differ, and paths to the fixtures the tests use (all shipped in the repo; tests never read ../shared).

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import type { Backend } from "../src/backend/contract.js";
import { loadNative, type SimdLevel } from "../src/backend/native/index.js";
import { type BackendName, defaultBackendName, selectBackend } from "../src/backend/select.js";
import { mulberry32 } from "../src/rng.js";
import type { LlamaConfig } from "../src/model/config.js";
import { type FloatCtor, type Gradients, type Model, backward, createActivations, createGradients, createModel, forward } from "../src/model/decoder.js";

type Num = ArrayLike<number>;

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const fixture = (...parts: string[]): string => join(repoRoot, "test", "fixtures", ...parts);
export const asset = (...parts: string[]): string => join(repoRoot, "assets", ...parts);
export const storiesGguf = asset("models", "stories260K", "stories260K.gguf");
export const slow = process.env.TSDPO_SLOW === "1";

// The backend under test: TSDPO_BACKEND (js, native or auto), js when unset; scripts/test.js runs the suite once with
// js and once with native. It is written back into process.env so that everything a test starts agrees with the
// in-process kernels: spawned CLI processes inherit it, and train configs without a "backend" key resolve to it.
// Tests that need float64 (finite differences, kernel definitions) stay on the js reference: native is float32 only.
process.env.TSDPO_BACKEND ||= "js";

/** The backend under test, as a train config's "backend" names it. Throws on a value that is not a backend. */
export const testBackendName: BackendName = defaultBackendName();

/** The backend under test (selected through TSDPO_BACKEND, as the CLI does without --backend). */
export function testBackend(): Backend {
  return selectBackend();
}

/** max |a - b| over all elements */
export function maxAbsDiff(a: Num, b: Num): number {
  assert.equal(a.length, b.length, `length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d; // NaN propagates
  }
  return m;
}

/** Asserts |a - b| <= atol + rtol * |b| elementwise, like numpy.allclose, with a message naming the worst element. */
export function assertAllClose(a: Num, b: Num, atol: number, rtol = 0, what = "arrays"): void {
  assert.equal(a.length, b.length, `${what}: length ${a.length} != ${b.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    const excess = Math.abs(x - y) - (atol + rtol * Math.abs(y));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0)
    assert.fail(
      `${what}: element ${worst} is ${a[worst]} but expected ${b[worst]} ` +
        `(|diff| ${Math.abs(a[worst]! - b[worst]!)} > atol ${atol} + rtol ${rtol}·|expected|; max abs diff ${maxAbsDiff(a, b)})`,
    );
}

/** Deterministic pseudo-random numbers for tests (mulberry32), so failures reproduce. */
export const rng = mulberry32;

export function randomArray(n: number, r: () => number, scale = 1, ctor: Float32ArrayConstructor | Float64ArrayConstructor = Float64Array): Float32Array | Float64Array {
  const a = new ctor(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

/** Whether the native addon loads and this CPU runs its `level` copy of the vector code; the level in use is kept. */
export function nativeSimdRuns(level: SimdLevel): boolean {
  const native = loadNative();
  if (!native.ok) return false;
  const current = native.info().simd;
  const ok = native.setSimd(level);
  native.setSimd(current);
  return ok;
}

/**
 * Checks analytic gradients of L = Σ w·fwd() (w random) against central differences for every element of every input
 * (inputs are small). `bwd(w)` must return freshly computed gradients (from zero) for the named inputs. Returns the
 * largest absolute difference seen, for tests that report it.
 */
export function checkGradients(
  name: string, inputs: Record<string, Float64Array>, fwd: () => Num, bwd: (dout: Float64Array) => Record<string, Num>,
  r: () => number, h = 1e-5, tol = 1e-7,
): number {
  const w = randomArray(fwd().length, r, 1, Float64Array) as Float64Array;
  const objective = (): number => {
    const o = fwd();
    let s = 0;
    for (let i = 0; i < o.length; i++) s += w[i]! * o[i]!;
    return s;
  };
  const analytic = bwd(w);
  let worst = 0;
  for (const [key, arr] of Object.entries(inputs)) {
    const g = analytic[key];
    assert.ok(g, `${name}: no gradient for ${key}`);
    const numeric = new Float64Array(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const x = arr[i]!;
      arr[i] = x + h;
      const lp = objective();
      arr[i] = x - h;
      const lm = objective();
      arr[i] = x;
      numeric[i] = (lp - lm) / (2 * h);
    }
    assertAllClose(g, numeric, tol, 1e-6, `${name} d${key}`);
    worst = Math.max(worst, maxAbsDiff(g, numeric));
  }
  return worst;
}

/**
 * Central differences of S() at params[j] (h = 1e-6, float64 models) against the analytic grads[j], for each picked
 * parameter index; `what` names it in the failure. Tolerance 1e-7 + 1e-6·|numeric|.
 */
export function assertParamGradients(
  params: Float32Array | Float64Array, grads: ArrayLike<number>, S: () => number, picks: Iterable<{ j: number; what: string }>, h = 1e-6,
): void {
  for (const { j, what } of picks) {
    const x = params[j]!;
    params[j] = x + h;
    const sp = S();
    params[j] = x - h;
    const sm = S();
    params[j] = x;
    const numeric = (sp - sm) / (2 * h), analytic = grads[j]!;
    assert.ok(Math.abs(analytic - numeric) <= 1e-7 + 1e-6 * Math.abs(numeric), `${what}: analytic ${analytic} vs numeric ${numeric}`);
  }
}

/** max over (m, v) of Σ_c |x[rows[m], c]·W[v, c]|: the scale of a float32 logit's rounding error (≈ √C·u times it). */
export function logitScale(x: ArrayLike<number>, rows: Int32Array, W: ArrayLike<number>, M: number, C: number, V: number): number {
  let zScale = 0;
  for (let m = 0; m < M; m++)
    for (let v = 0; v < V; v++) {
      let a = 0;
      for (let c = 0; c < C; c++) a += Math.abs(x[rows[m]! * C + c]! * W[v * C + c]!);
      zScale = Math.max(zScale, a);
    }
  return zScale;
}

/** A model of `cfg` with seeded random weights: norms 1 ± 0.1, everything else uniform in ±scale/2. */
export function randomModel(cfg: LlamaConfig, ctor: FloatCtor, seed: number, scale = 0.8): Model {
  const model = createModel(cfg, ctor);
  const r = rng(seed);
  for (const e of model.entries)
    for (let i = 0; i < e.size; i++) model.params[e.offset + i] = /norm/.test(e.name) ? 1 + 0.2 * (r() - 0.5) : scale * (r() - 0.5);
  return model;
}

/**
 * The model-level finite-difference setup the model tests share: S() = Σ w·log p over a fixed batch (each call a
 * fresh forward), and the gradients of S from one backward, for assertParamGradients to compare.
 */
export function weightedLogpGradients(
  be: Backend, model: Model, ids: Int32Array, targets: Int32Array, w: Float64Array, R: number, T: number,
): { S: () => number; grads: Gradients } {
  const acts = createActivations(model, R, T);
  const S = (): number => {
    const lp = forward(be, model, acts, ids, targets, R, T);
    let s = 0;
    for (let i = 0; i < R * T; i++) s += w[i]! * lp[i]!;
    return s;
  };
  S();
  const grads = createGradients(model);
  backward(be, model, acts, grads, w);
  return { S, grads };
}
