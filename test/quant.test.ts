// GGML's block formats (src/quant/ggml.ts and its C++ twin src/backend/native/quant.inc) against ggml itself.
//
// The fixtures (test/fixtures/quant/, written by tools/ggml-ref/gen.mjs from the libggml-base.so node-llama-cpp ships)
// hold, per type, ggml's quantised bytes for 19 input rows of 256 floats (Gaussian, zeros, constants, one huge value,
// negative-only, values at fp16's limits, float32 subnormals, near FLT_MAX, ties, ...; NaN and inf for F16/BF16
// only), ggml's dequantised floats of those bytes, and ggml's dequantisation of random block bytes (so scales that
// are NaN, inf or subnormal halves too). Everything is compared bit for bit:
// - quantizeRow must give ggml's bytes, dequantizeRow ggml's float32 bits, NaN payloads included. The one allowance:
//   a NaN that ggml computed (0·inf, inf − inf in a block with a non-finite scale) may come out as another NaN on a
//   host other than x86-64, where neither JavaScript nor C++ promises which NaN an operation returns.
// - F16 and BF16 conversions over larger samples (every 16-bit pattern; every 4093rd float32 pattern; every
//   round-to-even tie and its neighbours) through sha-256s of ggml's outputs, which the generator stored.
// Beside ggml, slow references written from the format descriptions alone: each element's value as a float64
// formula (every product in these formats is exact in float32, so rounding that formula once to float32 must give
// the same bits), fp16/bf16 rounding as "the nearest representable value, ties to even", and a round-trip error
// bound per type that would catch a quantiser which matched a wrongly regenerated fixture.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import { BLOCK, GGML_TYPE_ID, dequantizeRow, quantizeRow, rowBytes, type QuantType } from "../src/quant/ggml.js";
import { fixture, repoRoot } from "./helpers.js";

const TYPES: QuantType[] = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"];

interface TypeEntry {
  ggml: { id: number; name: string; blockElems: number; blockBytes: number };
  file: string;
  cases: number[];
  randomBlocks: number;
  quant: [number, number];
  dequant: [number, number];
  randomBytes: [number, number];
  randomDequant: [number, number];
}
interface Manifest {
  rowElems: number;
  cases: { name: string; floatOnly?: boolean }[];
  types: Record<string, TypeEntry>;
  conversions: Record<string, { count: number; inputSha256?: string; outputSha256: string }>;
}

const dir = fixture("quant");
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;
const N = manifest.rowElems;
// Copies into fresh (aligned) ArrayBuffers: Float32Array views need 4-byte alignment.
const inputs = new Float32Array(new Uint8Array(readFileSync(join(dir, "inputs.bin"))).buffer);
const files = new Map(TYPES.map((t) => [t, new Uint8Array(readFileSync(join(dir, manifest.types[t]!.file)))]));
const part = (t: QuantType, [off, len]: [number, number]): Uint8Array => files.get(t)!.slice(off, off + len);
const floatsOf = (b: Uint8Array): Float32Array => new Float32Array(b.slice().buffer);
const bitsOf = (f: Float32Array): Uint32Array => new Uint32Array(f.buffer, f.byteOffset, f.length);
const hex = (u: number): string => "0x" + (u >>> 0).toString(16).padStart(8, "0");
const sha256 = (a: ArrayBufferView): string =>
  createHash("sha256").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");

/** Bit-for-bit float comparison, naming the first difference (see the header for the one NaN allowance). */
function assertSameBits(got: Float32Array, want: Float32Array, what: (i: number) => string): void {
  assert.equal(got.length, want.length, `${what(0)}: length`);
  const g = bitsOf(got);
  const w = bitsOf(want);
  const anyNaN = process.arch !== "x64";
  for (let i = 0; i < g.length; i++) {
    if (g[i] === w[i] || (anyNaN && Number.isNaN(got[i]) && Number.isNaN(want[i]))) continue;
    assert.fail(`${what(i)}: got ${got[i]} (${hex(g[i]!)}), ggml ${want[i]} (${hex(w[i]!)})`);
  }
}

function assertSameBytes(got: Uint8Array, want: Uint8Array, what: (i: number) => string): void {
  assert.equal(got.length, want.length, `${what(0)}: length`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) assert.fail(`${what(i)}: got 0x${got[i]!.toString(16)}, ggml 0x${want[i]!.toString(16)}`);
  }
}

const caseName = (t: QuantType, k: number): string => manifest.cases[manifest.types[t]!.cases[k]!]!.name;

// ------------------------------------------------------------------------------------------------------------------
// Tables

test("type ids, block sizes and row bytes are ggml's", () => {
  assert.deepEqual(Object.keys(BLOCK).sort(), [...TYPES].sort());
  assert.deepEqual(Object.keys(GGML_TYPE_ID).sort(), [...TYPES].sort());
  // As ggml.h's enum and ggml-common.h's static_asserts have them, and as the library reported them.
  const known: Record<QuantType, [number, number, number]> = {
    F16: [1, 1, 2], BF16: [30, 1, 2], Q4_0: [2, 32, 18], Q4_1: [3, 32, 20], Q5_0: [6, 32, 22], Q5_1: [7, 32, 24],
    Q8_0: [8, 32, 34], Q4_K: [12, 256, 144], Q5_K: [13, 256, 176], Q6_K: [14, 256, 210],
  };
  for (const t of TYPES) {
    const g = manifest.types[t]!.ggml;
    assert.deepEqual([g.id, g.blockElems, g.blockBytes], known[t], `${t}: the fixture's ggml traits`);
    assert.equal(g.name.toUpperCase(), t, `${t}: ggml's name`);
    assert.deepEqual([GGML_TYPE_ID[t], BLOCK[t].elems, BLOCK[t].bytes], known[t], t);
    assert.equal(rowBytes(t, 0), 0);
    assert.equal(rowBytes(t, 4096), (4096 / known[t][1]) * known[t][2], `rowBytes(${t}, 4096)`);
  }
  assert.equal(rowBytes("F16", 3), 6);
  // Qwen2.5-0.5B's hidden size 896 is 3.5 super-blocks: llama.cpp stores such rows as Q5_0 where Q4_K was asked for
  assert.equal(rowBytes("Q5_0", 896), 28 * 22);
});

function assertInputError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TsdpoError, `expected a TsdpoError, got ${String(e)}`);
    assert.equal(e.kind, "input");
    assert.match(e.message, pattern);
    return true;
  });
}

test("rowBytes, dequantizeRow and quantizeRow reject rows that are not whole blocks, and short buffers", () => {
  assertInputError(() => rowBytes("Q4_K", 4000), /rowBytes\(Q4_K\): a row of 4000 elements .*\(256 elements each\)/);
  assertInputError(() => rowBytes("Q8_0", 33), /Q8_0.*33.*32/);
  assertInputError(() => rowBytes("Q4_0", -32), /-32/);
  assertInputError(() => rowBytes("F16", 1.5), /1\.5/);
  assertInputError(() => rowBytes("Q9_9" as QuantType, 32), /unknown GGML quant type "Q9_9"/);
  assertInputError(() => dequantizeRow("Q6_K", new Uint8Array(209), 0, new Float32Array(256), 0, 256), /src holds 209 bytes but the row needs 210/);
  assertInputError(() => dequantizeRow("Q4_0", new Uint8Array(36), 1, new Float32Array(64), 0, 64), /from offset 1/);
  assertInputError(() => dequantizeRow("Q8_0", new Uint8Array(34), 0, new Float32Array(40), 9, 32), /dst holds 40 floats/);
  assertInputError(() => quantizeRow("Q5_K", new Float32Array(255), 0, 256, new Uint8Array(176), 0), /src holds 255 floats/);
  assertInputError(() => quantizeRow("Q5_1", new Float32Array(32), 0, 32, new Uint8Array(23), 0), /dst holds 23 bytes but the row needs 24/);
  assertInputError(() => quantizeRow("Q4_1", new Float32Array(48), 0, 48, new Uint8Array(40), 0), /48 elements/);
});

// ------------------------------------------------------------------------------------------------------------------
// Against ggml, bit for bit

for (const t of TYPES) {
  const e = manifest.types[t]!;
  const rb = rowBytes(t, N);

  test(`${t}: quantizeRow gives ggml's bytes`, () => {
    const want = part(t, e.quant);
    assert.equal(want.length, e.cases.length * rb);
    // Row by row, written at an odd offset into a larger buffer that must stay untouched around it.
    e.cases.forEach((c, k) => {
      const out = new Uint8Array(rb + 10).fill(0xa5);
      quantizeRow(t, inputs, c * N, N, out, 7);
      assertSameBytes(out.subarray(7, 7 + rb), want.subarray(k * rb, (k + 1) * rb), (i) => `${t} case "${caseName(t, k)}" byte ${i} (block ${Math.floor(i / BLOCK[t].bytes)})`);
      assert.ok(out.subarray(0, 7).every((b) => b === 0xa5) && out.subarray(7 + rb).every((b) => b === 0xa5), `${t}: wrote outside its row`);
    });
    // All rows in one call (the cases of each type are consecutive in inputs.bin).
    const first = e.cases[0]!;
    assert.deepEqual(e.cases, e.cases.map((_, k) => first + k));
    const all = new Uint8Array(want.length);
    quantizeRow(t, inputs, first * N, e.cases.length * N, all, 0);
    assertSameBytes(all, want, (i) => `${t} one call over every case, byte ${i}`);
  });

  test(`${t}: dequantizeRow gives ggml's float32 bits`, () => {
    const bytes = part(t, e.quant);
    const want = floatsOf(part(t, e.dequant));
    const got = new Float32Array(want.length);
    for (let k = 0; k < e.cases.length; k++) dequantizeRow(t, bytes, k * rb, got, k * N, N);
    assertSameBits(got, want, (i) => `${t} case "${caseName(t, Math.floor(i / N))}" element ${i % N}`);

    // Random bytes: every bit pattern of the scales, too. Read from an odd offset into an offset destination.
    const rnd = part(t, e.randomBytes);
    const rndWant = floatsOf(part(t, e.randomDequant));
    const n = e.randomBlocks * BLOCK[t].elems;
    const src = new Uint8Array(rnd.length + 3);
    src.set(rnd, 3);
    const dst = new Float32Array(n + 5).fill(-7);
    dequantizeRow(t, src, 3, dst, 5, n);
    assertSameBits(dst.subarray(5), rndWant, (i) => `${t} random block ${Math.floor(i / BLOCK[t].elems)} element ${i % BLOCK[t].elems}`);
    assert.ok(dst.subarray(0, 5).every((v) => v === -7), `${t}: wrote before dstOff`);
  });
}

// ------------------------------------------------------------------------------------------------------------------
// F16 and BF16 over large samples, against the sha-256s of ggml's outputs

// The same sample rules as tools/ggml-ref/gen.mjs (their input hashes are checked first).
function halfValue(h: number): number {
  const e = h >> 10;
  const m = h & 0x3ff;
  return e === 0 ? m * 2 ** -24 : 2 ** (e - 15) * (1 + m / 1024); // 0x7c00 reads as 65536: the top midpoint's neighbour
}
const samples: Record<string, () => Uint32Array> = {
  f32Stride: () => Uint32Array.from({ length: 1 << 20 }, (_, i) => i * 4093),
  f16Ties: () => {
    const out: number[] = [];
    for (let h = 0; h < 0x7c00; h++) {
      const mid = new Uint32Array(new Float32Array([(halfValue(h) + halfValue(h + 1)) / 2]).buffer)[0]!;
      for (const b of [mid - 1, mid, mid + 1]) out.push(b, (b | 0x80000000) >>> 0);
    }
    return Uint32Array.from(out);
  },
  bf16Ties: () => Uint32Array.from({ length: 3 * 65536 }, (_, i) => (((i / 3) | 0) * 65536 + [0x7fff, 0x8000, 0x8001][i % 3]!) >>> 0),
};
const sampleCache = new Map<string, Uint32Array>();
const sample = (name: string): Uint32Array => {
  if (!sampleCache.has(name)) sampleCache.set(name, samples[name]!());
  return sampleCache.get(name)!;
};

test("F16 and BF16 conversions over large samples hash to ggml's outputs", () => {
  const conv = manifest.conversions;
  for (const [key, c] of Object.entries(conv)) {
    let got: Uint8Array | Float32Array;
    const toFloat = /^all-(F16|BF16)->F32$/.exec(key);
    if (toFloat) {
      const t = toFloat[1] as QuantType;
      const halves = new Uint8Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer);
      got = new Float32Array(65536);
      dequantizeRow(t, halves, 0, got, 0, 65536);
    } else {
      const [sname, t] = key.split("->") as [string, QuantType];
      const s = sample(sname);
      assert.equal(sha256(s), c.inputSha256, `${key}: the test's sample differs from the generator's; keep the rules in step`);
      got = new Uint8Array(rowBytes(t, s.length));
      quantizeRow(t, new Float32Array(s.buffer), 0, s.length, got, 0);
    }
    assert.equal(sha256(got), c.outputSha256, `${key}: ${c.count} conversions differ from ggml's somewhere (the slow-reference tests below say where)`);
  }
});

// ------------------------------------------------------------------------------------------------------------------
// Slow references from the format descriptions

test("F16 → float32 for every half is the IEEE formula; NaNs come out quiet with their payload", () => {
  const halves = new Uint8Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer);
  const got = new Float32Array(65536);
  dequantizeRow("F16", halves, 0, got, 0, 65536);
  const bits = bitsOf(got);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 31;
    const m = h & 0x3ff;
    if (e === 31 && m !== 0) {
      // quiet NaN, same sign, the 10 payload bits at the top of float32's 23
      assert.equal(bits[h], (((h & 0x8000) << 16) | 0x7fc00000 | (m << 13)) >>> 0, `half ${h.toString(16)}`);
      continue;
    }
    const want = e === 31 ? s * Infinity : e === 0 ? s * m * 2 ** -24 : s * 2 ** (e - 15) * (1 + m / 1024);
    assert.ok(Object.is(got[h], want), `half 0x${h.toString(16)}: got ${got[h]}, formula ${want}`);
  }
});

/** The half nearest to |x| (ties to the even bits); 0x7c00 stands for 65536, i.e. overflow to infinity. */
function nearestHalfRef(ax: number): number {
  if (ax >= 65536) return 0x7c00;
  let lo = 0;
  let hi = 0x7c00;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (halfValue(mid) <= ax) lo = mid;
    else hi = mid;
  }
  const dl = ax - halfValue(lo);
  const dh = halfValue(hi) - ax;
  return dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
}

test("float32 → F16 and → BF16 round to the nearest value, ties to even (slow reference, sampled)", () => {
  const xs = new Float32Array(Uint32Array.from([
    ...sample("f16Ties").filter((_, i) => i % 3 === 0),
    ...sample("f32Stride").filter((_, i) => i % 8 === 0),
    ...sample("bf16Ties").filter((_, i) => i % 5 === 0),
  ]).buffer);
  const f16 = new Uint16Array(xs.length);
  const bf16 = new Uint16Array(xs.length);
  quantizeRow("F16", xs, 0, xs.length, new Uint8Array(f16.buffer), 0);
  quantizeRow("BF16", xs, 0, xs.length, new Uint8Array(bf16.buffer), 0);
  const xbits = bitsOf(xs);
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    const sign = (xbits[i]! >>> 16) & 0x8000;
    const what = `x = ${x} (${hex(xbits[i]!)})`;
    // F16: a NaN is a quiet NaN of the same sign without payload, the rest the nearest half.
    assert.equal(f16[i], sign | (Number.isNaN(x) ? 0x7e00 : nearestHalfRef(Math.abs(x))), `F16 of ${what}`);
    // BF16: the top half of x's bits or the next one up in magnitude, whichever is nearer; a NaN keeps its top half
    // with the quiet bit set.
    const top = xbits[i]! >>> 16;
    let want: number;
    if (Number.isNaN(x)) {
      want = top | 0x40;
    } else {
      const lo = Math.abs(new Float32Array(new Uint32Array([(top << 16) >>> 0]).buffer)[0]!);
      const hi = (top & 0x7fff) === 0x7f7f ? 2 ** 128 : Math.abs(new Float32Array(new Uint32Array([((top + 1) << 16) >>> 0]).buffer)[0]!);
      const ax = Math.abs(x);
      want = ax - lo < hi - ax ? top : hi - ax < ax - lo ? top + 1 : (top & 1) === 0 ? top : top + 1;
      if (!Number.isFinite(x)) want = top;
    }
    assert.equal(bf16[i], want, `BF16 of ${what}`);
  }
});

// Element i of one block as a float64 formula read from the layout (ggml-common.h's structs), with no shared code
// with src/quant/ggml.ts: `half` reads an fp16 field by its IEEE definition, `nib`/`bit` read bits.
function halfAt(b: Uint8Array, o: number): number {
  const h = b[o]! | (b[o + 1]! << 8);
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 0x3ff;
  if (e === 31) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -24 : s * 2 ** (e - 15) * (1 + m / 1024);
}
const nib = (byte: number, high: boolean): number => (high ? byte >> 4 : byte & 15);
const bit = (b: Uint8Array, o: number, k: number): number => (b[o + (k >> 3)]! >> (k & 7)) & 1;
const i8 = (v: number): number => (v > 127 ? v - 256 : v);
/** 6-bit scale (which = 0) or min (which = 1) of sub-block j of a Q4_K/Q5_K scales[12] starting at o. */
function sixBit(b: Uint8Array, o: number, j: number, which: 0 | 1): number {
  if (j < 4) return b[o + j + 4 * which]! & 63;
  const low4 = nib(b[o + j + 4]!, which === 1);
  const top2 = b[o + j - 4 + 4 * which]! >> 6;
  return low4 + 16 * top2;
}

const REFERENCE: Partial<Record<QuantType, (b: Uint8Array, o: number, i: number) => number>> = {
  // 32-element blocks: element i < 16 in the low nibble of qs[i], i ≥ 16 in the high nibble of qs[i − 16]
  Q4_0: (b, o, i) => (nib(b[o + 2 + (i % 16)]!, i >= 16) - 8) * halfAt(b, o),
  Q4_1: (b, o, i) => nib(b[o + 4 + (i % 16)]!, i >= 16) * halfAt(b, o) + halfAt(b, o + 2),
  Q5_0: (b, o, i) => (nib(b[o + 6 + (i % 16)]!, i >= 16) + 16 * bit(b, o + 2, i) - 16) * halfAt(b, o),
  Q5_1: (b, o, i) => (nib(b[o + 8 + (i % 16)]!, i >= 16) + 16 * bit(b, o + 4, i)) * halfAt(b, o) + halfAt(b, o + 2),
  Q8_0: (b, o, i) => i8(b[o + 2 + i]!) * halfAt(b, o),
  // 8 sub-blocks of 32; sub-blocks 2k and 2k+1 share qs[32k..32k+31] (low, high nibbles)
  Q4_K: (b, o, i) => {
    const j = i >> 5;
    const q = nib(b[o + 16 + 32 * (j >> 1) + (i & 31)]!, (j & 1) === 1);
    return halfAt(b, o) * sixBit(b, o + 4, j, 0) * q - halfAt(b, o + 2) * sixBit(b, o + 4, j, 1);
  },
  // as Q4_K, the 5th bit of element i at bit j of qh[i mod 32]
  Q5_K: (b, o, i) => {
    const j = i >> 5;
    const q = nib(b[o + 48 + 32 * (j >> 1) + (i & 31)]!, (j & 1) === 1) + 16 * bit(b, o + 16 + (i & 31), j);
    return halfAt(b, o) * sixBit(b, o + 4, j, 0) * q - halfAt(b, o + 2) * sixBit(b, o + 4, j, 1);
  },
  // 16 groups of 16 with scale[i >> 4]; in each half of 128, quarter g of 32 takes nibble g >> 1 of ql[l + 32(g & 1)]
  // and bits 2g, 2g+1 of qh[l], l = i mod 32
  Q6_K: (b, o, i) => {
    const half = i >> 7;
    const g = (i >> 5) & 3;
    const l = i & 31;
    const low = nib(b[o + 64 * half + l + 32 * (g & 1)]!, g >= 2);
    const high = (b[o + 128 + 32 * half + l]! >> (2 * g)) & 3;
    return halfAt(b, o + 208) * i8(b[o + 192 + (i >> 4)]!) * (low + 16 * high - 32);
  },
};

test("dequantizeRow equals a float64 reading of each block format, rounded once", () => {
  for (const [t, ref] of Object.entries(REFERENCE) as [QuantType, (b: Uint8Array, o: number, i: number) => number][]) {
    const { elems, bytes } = BLOCK[t];
    const e = manifest.types[t]!;
    for (const src of [part(t, e.quant), part(t, e.randomBytes)]) {
      const nb = src.length / bytes;
      const got = new Float32Array(nb * elems);
      dequantizeRow(t, src, 0, got, 0, nb * elems);
      for (let blk = 0; blk < nb; blk++) {
        for (let i = 0; i < elems; i++) {
          const want = Math.fround(ref(src, blk * bytes, i));
          const g = got[blk * elems + i]!;
          if (Object.is(g, want) || (Number.isNaN(g) && Number.isNaN(want))) continue;
          assert.fail(`${t} block ${blk} element ${i}: dequantizeRow ${g}, formula ${want}`);
        }
      }
    }
  }
});

test("quantise → dequantise stays within each format's error on Gaussian rows", () => {
  // RMS error over σ on the fixtures' two Gaussian rows: 1.5× what ggml's quantisers get on them (F16 2.2e-4 …
  // Q4_0 0.090), in the order of bits per weight. A wrong scale or a misplaced nibble would be far off.
  const bound: Record<QuantType, number> = {
    F16: 3.3e-4, BF16: 2.8e-3, Q8_0: 0.008, Q6_K: 0.026, Q5_K: 0.055, Q5_1: 0.056, Q5_0: 0.064, Q4_K: 0.107,
    Q4_1: 0.117, Q4_0: 0.135,
  };
  for (const t of TYPES) {
    for (const name of ["gauss", "gauss-2"]) {
      const c = manifest.cases.findIndex((k) => k.name === name);
      const x = inputs.subarray(c * N, (c + 1) * N);
      const q = new Uint8Array(rowBytes(t, N));
      quantizeRow(t, x, 0, N, q, 0);
      const y = new Float32Array(N);
      dequantizeRow(t, q, 0, y, 0, N);
      let mean = 0;
      for (const v of x) mean += v / N;
      let se = 0;
      let sv = 0;
      for (let i = 0; i < N; i++) {
        se += (x[i]! - y[i]!) ** 2;
        sv += (x[i]! - mean) ** 2;
      }
      const rel = Math.sqrt(se / sv);
      assert.ok(rel < bound[t], `${t} on "${name}": relative RMS error ${rel.toFixed(4)} ≥ ${bound[t]}`);
    }
  }
});

// ------------------------------------------------------------------------------------------------------------------
// The C++ twin, src/backend/native/quant.inc

const cxx = process.env.CXX || "g++";
const haveCxx = !spawnSync(cxx, ["--version"]).error;
/** x86-64-v3 (AVX2 + FMA): the target under which the addon may compile quant.inc, with FMA contraction on. */
const v3 = process.arch === "x64" && process.platform === "linux" && existsSync("/proc/cpuinfo") &&
  ["avx2", "fma", "f16c", "bmi2", "movbe"].every((f) => new RegExp(`\\b${f}\\b`).test(readFileSync("/proc/cpuinfo", "utf8")));

test("quant.inc's dequant_row gives ggml's float32 bits (compiled with g++, plain and x86-64-v3 with FMA)",
  { skip: haveCxx ? false : `no C++ compiler (${cxx}); set CXX to test src/backend/native/quant.inc` }, () => {
    const tmp = mkdtempSync(join(tmpdir(), "tsdpo-quant-check-"));
    try {
      const builds: [string, string[]][] = [["plain", []]];
      if (v3) builds.push(["x86-64-v3", ["-march=x86-64-v3", "-ffp-contract=fast"]]);
      for (const [label, flags] of builds) {
        const exe = join(tmp, `quant_check-${label}`);
        const cc = spawnSync(cxx, ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", ...flags, "-o", exe,
          join(repoRoot, "test", "native", "quant_check.cc")], { encoding: "utf8" });
        assert.equal(cc.status, 0, `${cxx} failed on test/native/quant_check.cc (${label}):\n${cc.stderr}`);
        for (const t of TYPES) {
          const e = manifest.types[t]!;
          for (const [bytesPart, floatsPart, n] of [[e.quant, e.dequant, N], [e.randomBytes, e.randomDequant, e.randomBlocks * BLOCK[t].elems]] as const) {
            const run = spawnSync(exe, [String(GGML_TYPE_ID[t]), String(n)], { input: part(t, bytesPart), maxBuffer: 1 << 24 });
            assert.equal(run.status, 0, `quant_check ${t}: ${run.stderr?.toString()}`);
            const got = floatsOf(new Uint8Array(run.stdout));
            assertSameBits(got, floatsOf(part(t, floatsPart)), (i) => `quant.inc (${label}) ${t} row ${Math.floor(i / n)} element ${i % n}`);
          }
        }
        // Unknown types and partial blocks are refused.
        assert.equal(spawnSync(exe, ["10", "256"], { input: new Uint8Array(84) }).status, 2, "Q2_K is not supported");
        assert.equal(spawnSync(exe, ["12", "128"], { input: new Uint8Array(144) }).status, 2, "half a Q4_K block");
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
