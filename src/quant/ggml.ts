// GGML's block formats (the tensor types of quantised GGUF files): F16, BF16, the 32-element blocks Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0 and the 256-element super-blocks Q4_K, Q5_K, Q6_K. These are every type llama.cpp's Q4_K_M, Q8_0 and
// Q6_K outputs use, including the fallbacks it picks for rows that are not a multiple of 256 (Q4_K → Q5_0,
// Q5_K → Q5_1, Q6_K → Q8_0, and F16 when the row is not a multiple of 32 either).
//
// Both directions match ggml bit for bit (checked against ggml's own library by test/quant.test.ts and the fixtures
// tools/ggml-ref writes):
// - dequantizeRow gives the float32 bits of ggml's dequantize_row_*;
// - quantizeRow gives the bytes of ggml's quantize_row_*_ref, the reference quantisers `llama-quantize` runs when no
//   importance matrix is given (ggml_quantize_chunk with imatrix = NULL).
//
// How the bit-exactness is obtained:
// - Every arithmetic step of ggml's C is done in float32: Math.fround after each + − × ÷ and sqrt, in C's order of
//   evaluation. A double result of one operation on two float32 values, rounded once to float32, is the correctly
//   rounded float32 result (double has more than 2·24 + 2 bits), so fround(a op b) is exactly C's float `a op b`.
// - ggml's helpers are emulated as they behave, not as they read: nearest_int adds 1.5·2^23 in float32 and takes
//   the mantissa bits (round half to even, not half away); roundf (Q8_0) rounds half away from zero; `(int8_t)f`
//   truncates toward zero and keeps the low byte, and a value out of int range (NaN, ±inf, which arise when a block's
//   maximum is so small that 1/d overflows) gives INT_MIN as x86-64's cvttss2si does (undefined behaviour in C; an
//   arm64 build of ggml saturates instead, so such blocks can differ there).
// - The K-quants' search (make_qkx2_quants) recomputes max − min at every grid step: once a better fit has replaced
//   min, the later candidate scales are taken over the new range, and hoisting it changes Q4_K/Q5_K bytes.
// - C's truthiness of floats: `d ? 1/d : 0` treats NaN as true and −0 as false (`d !== 0` here, not `d ?`).
// - fp16 rounds to nearest even with overflow to infinity and NaN to a quiet NaN with no payload (sign kept), and
//   fp16 → fp32 quiets a signalling NaN (ggml multiplies by 2^-112); bf16 rounds to nearest even and turns a NaN into
//   its top half with the quiet bit set. For F16 and BF16 the bits are moved through integer views, so NaN payloads
//   survive as in ggml; elsewhere a NaN result is a NaN but its payload bits are whatever JavaScript keeps.
//
// The code is plain loops on typed arrays with a few module-level scratch buffers: no allocation per block.

import { inputError } from "../errors.js";

export type QuantType = "F16" | "BF16" | "Q8_0" | "Q4_0" | "Q4_1" | "Q5_0" | "Q5_1" | "Q4_K" | "Q5_K" | "Q6_K";

/** ggml's `enum ggml_type` values (ggml.h), as stored in a GGUF tensor-info record. */
export const GGML_TYPE_ID: Record<QuantType, number> = Object.freeze({
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  BF16: 30,
});

/** Elements and bytes per block (ggml_blck_size, ggml_type_size). */
export const BLOCK: Record<QuantType, { elems: number; bytes: number }> = Object.freeze({
  F16: Object.freeze({ elems: 1, bytes: 2 }),
  BF16: Object.freeze({ elems: 1, bytes: 2 }),
  Q4_0: Object.freeze({ elems: 32, bytes: 18 }), // d:f16, qs[16] (two 4-bit quants a byte)
  Q4_1: Object.freeze({ elems: 32, bytes: 20 }), // d:f16, m:f16, qs[16]
  Q5_0: Object.freeze({ elems: 32, bytes: 22 }), // d:f16, qh:u32 (5th bits), qs[16]
  Q5_1: Object.freeze({ elems: 32, bytes: 24 }), // d:f16, m:f16, qh:u32, qs[16]
  Q8_0: Object.freeze({ elems: 32, bytes: 34 }), // d:f16, qs:i8[32]
  Q4_K: Object.freeze({ elems: 256, bytes: 144 }), // d:f16, dmin:f16, scales[12] (8 × 6-bit scale and min), qs[128]
  Q5_K: Object.freeze({ elems: 256, bytes: 176 }), // d, dmin, scales[12], qh[32], qs[128]
  Q6_K: Object.freeze({ elems: 256, bytes: 210 }), // ql[128], qh[64], scales:i8[16], d:f16 (d last)
});

/** bytes of a row of n elements (n a multiple of BLOCK[t].elems, else throws) */
export function rowBytes(t: QuantType, n: number): number {
  return blocksIn(t, n, "rowBytes") * blockOf(t).bytes;
}

/** dequantise n elements (a multiple of the block size) starting at byte `srcOff` into dst[dstOff..] */
export function dequantizeRow(t: QuantType, src: Uint8Array, srcOff: number, dst: Float32Array, dstOff: number, n: number): void {
  const nb = blocksIn(t, n, "dequantizeRow");
  checkSpan("dequantizeRow", t, "src", src.length, srcOff, nb * blockOf(t).bytes, "bytes");
  checkSpan("dequantizeRow", t, "dst", dst.length, dstOff, n, "floats");
  switch (t) {
    case "F16": return dequantF16(src, srcOff, dst, dstOff, n);
    case "BF16": return dequantBF16(src, srcOff, dst, dstOff, n);
    case "Q4_0": return dequantQ4_0(src, srcOff, dst, dstOff, nb);
    case "Q4_1": return dequantQ4_1(src, srcOff, dst, dstOff, nb);
    case "Q5_0": return dequantQ5_0(src, srcOff, dst, dstOff, nb);
    case "Q5_1": return dequantQ5_1(src, srcOff, dst, dstOff, nb);
    case "Q8_0": return dequantQ8_0(src, srcOff, dst, dstOff, nb);
    case "Q4_K": return dequantQ4_K(src, srcOff, dst, dstOff, nb);
    case "Q5_K": return dequantQ5_K(src, srcOff, dst, dstOff, nb);
    case "Q6_K": return dequantQ6_K(src, srcOff, dst, dstOff, nb);
    default: return unknownType(t);
  }
}

/** quantise n floats into the type's blocks, as ggml's reference quantiser (quantize_row_*_ref, no importance matrix) */
export function quantizeRow(t: QuantType, src: Float32Array, srcOff: number, n: number, dst: Uint8Array, dstOff: number): void {
  const nb = blocksIn(t, n, "quantizeRow");
  checkSpan("quantizeRow", t, "src", src.length, srcOff, n, "floats");
  checkSpan("quantizeRow", t, "dst", dst.length, dstOff, nb * blockOf(t).bytes, "bytes");
  switch (t) {
    case "F16": return quantF16(src, srcOff, n, dst, dstOff);
    case "BF16": return quantBF16(src, srcOff, n, dst, dstOff);
    case "Q4_0": return quantQ4_0(src, srcOff, nb, dst, dstOff);
    case "Q4_1": return quantQ4_1(src, srcOff, nb, dst, dstOff);
    case "Q5_0": return quantQ5_0(src, srcOff, nb, dst, dstOff);
    case "Q5_1": return quantQ5_1(src, srcOff, nb, dst, dstOff);
    case "Q8_0": return quantQ8_0(src, srcOff, nb, dst, dstOff);
    case "Q4_K": return quantQxK(src, srcOff, nb, dst, dstOff, 15);
    case "Q5_K": return quantQxK(src, srcOff, nb, dst, dstOff, 31);
    case "Q6_K": return quantQ6_K(src, srcOff, nb, dst, dstOff);
    default: return unknownType(t);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Argument checks. A wrong length here would otherwise read past a block into the next tensor, or write NaNs from
// out-of-range typed-array reads, without any error.

function blockOf(t: QuantType): { elems: number; bytes: number } {
  const b = BLOCK[t];
  if (b === undefined) unknownType(t as never);
  return b;
}

function blocksIn(t: QuantType, n: number, fn: string): number {
  const { elems } = blockOf(t);
  if (!Number.isSafeInteger(n) || n < 0 || n % elems !== 0) {
    throw inputError(
      `${fn}(${t}): a row of ${n} elements is not a whole number of ${t} blocks (${elems} elements each); ` +
        `ggml stores ${t} only in rows whose length is a multiple of ${elems}`,
    );
  }
  return n / elems;
}

function checkSpan(fn: string, t: QuantType, what: string, length: number, off: number, count: number, unit: string): void {
  if (!Number.isSafeInteger(off) || off < 0 || off + count > length) {
    throw inputError(`${fn}(${t}): ${what} holds ${length} ${unit} but the row needs ${count} from offset ${off}`);
  }
}

function unknownType(t: never): never {
  throw inputError(`unknown GGML quant type ${JSON.stringify(t)}; known: ${Object.keys(BLOCK).join(", ")}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Scalar helpers: float32 arithmetic and ggml's conversions.

const fr = Math.fround;
const FLT_MAX = fr(3.4028234663852886e38);
const GROUP_MAX_EPS = fr(1e-15); // ggml's "all zero" threshold for a group's largest magnitude (1e-15f)
const POINT_ONE = fr(0.1); // 0.1f

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/** ggml's nearest_int: x + 1.5·2^23 rounded to float32, then the low mantissa bits. Rounds half to EVEN. */
function nearestInt(x: number): number {
  // For |x| < 2^22 the float32 sum lands in [2^23, 2^24), where the spacing is 1, so the result is x rounded half to
  // even: Math.round (half up) corrected at ties that it sent to an odd integer. Done without the memory round trip,
  // as this runs ~20 times per element in the K-quants.
  if (Math.abs(x) < 4194304) {
    const r = Math.round(x) | 0; // | 0: an int, and +0 for C's 0 where Math.round gives −0
    return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
  }
  scratchF[0] = x + 12582912; // the store rounds the (exact) double sum to float32, as C's float addition does
  return (scratchU[0]! & 0x7fffff) - 0x400000;
}

/** C's `(int)f` as x86-64 compiles it (cvttss2si): toward zero; NaN or out of int32 range gives INT32_MIN. */
function cvtt(v: number): number {
  return v >= -2147483648 && v < 2147483648 ? Math.trunc(v) : -2147483648;
}

/** C's `(int8_t)i`: the low byte as a signed value. */
function int8(i: number): number {
  return (i << 24) >> 24;
}

/** C's roundf: half away from zero (exact: a float32 plus 0.5 is exact in double). */
function roundAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** IEEE half bits → float32 bits, as ggml_fp16_to_fp32 (a signalling NaN comes out quiet, payload kept). */
function halfToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13) | (mant !== 0 ? 0x400000 : 0)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // rebias 15 → 127
  if (mant === 0) return sign >>> 0;
  // Subnormal half mant·2^-24 is a normal float32: shift the leading one up to the implicit bit.
  let m = mant;
  let e = 113; // 127 − 14: the exponent of 0x400·2^-24 = 2^-14
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** float32 → IEEE half bits, as ggml_fp32_to_fp16: round to nearest even, overflow to ±inf, NaN to ±0x7e00. */
function floatToHalf(x: number): number {
  scratchF[0] = x;
  return floatBitsToHalf(scratchU[0]!);
}

function floatBitsToHalf(w: number): number {
  const sign = (w >>> 16) & 0x8000;
  const a = w & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00; // NaN: quiet, payload dropped
  if (a >= 0x47800000) return sign | 0x7c00; // |x| ≥ 65536 or inf
  if (a >= 0x38800000) {
    // Normal half range (≥ 2^-14): rebias the exponent and round 23 mantissa bits to 10, half to even. A carry out of
    // the mantissa moves into the exponent, which is the right result, up to infinity for |x| ≥ 65520.
    const m = a - 0x38000000;
    const h = m >>> 13;
    const rest = m & 0x1fff;
    return sign | (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1) ? h + 1 : h);
  }
  // Subnormal half (or zero): |x| in units of 2^-24, rounded half to even (|x|·2^24 is exact in double).
  scratchU[0] = a;
  const v = scratchF[0]! * 16777216;
  let q = Math.floor(v);
  const frac = v - q;
  if (frac > 0.5 || (frac === 0.5 && (q & 1) === 1)) q++;
  return sign | q;
}

/** float32 bits → bf16 bits, as ggml_compute_fp32_to_bf16: round to nearest even, NaN → top half | quiet bit. */
function floatBitsToBf16(w: number): number {
  if ((w & 0x7fffffff) > 0x7f800000) return (w >>> 16) | 64;
  return (w + 0x7fff + ((w >>> 16) & 1)) >>> 16; // < 2^32 for every non-NaN w, so no wrap-around
}

// All 65536 halves as float32, built on first use: the block formats read one or two halves per block.
let halfBits: Uint32Array | null = null;
let halfVals: Float32Array | null = null;
function halfTable(): Float32Array {
  if (halfVals === null) {
    halfBits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) halfBits[h] = halfToFloatBits(h);
    halfVals = new Float32Array(halfBits.buffer);
  }
  return halfVals;
}
function halfBitsTable(): Uint32Array {
  halfTable();
  return halfBits!;
}

function readHalf(src: Uint8Array, o: number, table: Float32Array): number {
  return table[src[o]! | (src[o + 1]! << 8)]!;
}

function writeHalf(dst: Uint8Array, o: number, x: number): void {
  const h = floatToHalf(x);
  dst[o] = h & 0xff;
  dst[o + 1] = h >>> 8;
}

// ---------------------------------------------------------------------------------------------------------------
// Dequantisation. Every formula below multiplies a half by small integers, so each product is exact in float32 and
// the value is rounded at most once (at the final store or the final subtraction); in ggml's order regardless.

function dequantF16(src: Uint8Array, so: number, dst: Float32Array, dO: number, n: number): void {
  const bits = halfBitsTable();
  const out = new Uint32Array(dst.buffer, dst.byteOffset + 4 * dO, n); // bit copies keep NaN payloads
  for (let i = 0; i < n; i++) out[i] = bits[src[so + 2 * i]! | (src[so + 2 * i + 1]! << 8)]!;
}

function dequantBF16(src: Uint8Array, so: number, dst: Float32Array, dO: number, n: number): void {
  const out = new Uint32Array(dst.buffer, dst.byteOffset + 4 * dO, n);
  for (let i = 0; i < n; i++) out[i] = ((src[so + 2 * i]! | (src[so + 2 * i + 1]! << 8)) << 16) >>> 0;
}

// x = (q − 8)·d, q the 4-bit quant; element j in the low nibble of byte j, element j + 16 in its high nibble.
function dequantQ4_0(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 18 * b;
    const y = dO + 32 * b;
    const d = readHalf(src, o, H);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j]!;
      dst[y + j] = fr(((q & 15) - 8) * d);
      dst[y + j + 16] = fr(((q >>> 4) - 8) * d);
    }
  }
}

// x = q·d + m.
function dequantQ4_1(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 20 * b;
    const y = dO + 32 * b;
    const d = readHalf(src, o, H);
    const m = readHalf(src, o + 2, H);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j]!;
      dst[y + j] = fr(fr((q & 15) * d) + m);
      dst[y + j + 16] = fr(fr((q >>> 4) * d) + m);
    }
  }
}

function readU32(src: Uint8Array, o: number): number {
  return (src[o]! | (src[o + 1]! << 8) | (src[o + 2]! << 16) | (src[o + 3]! << 24)) >>> 0;
}

// x = (q − 16)·d; bit j of qh is the 5th bit of element j, for all 32 elements.
function dequantQ5_0(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 22 * b;
    const y = dO + 32 * b;
    const d = readHalf(src, o, H);
    const qh = readU32(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j]!;
      const q0 = (q & 15) | (((qh >>> j) & 1) << 4);
      const q1 = (q >>> 4) | (((qh >>> (j + 16)) & 1) << 4);
      dst[y + j] = fr((q0 - 16) * d);
      dst[y + j + 16] = fr((q1 - 16) * d);
    }
  }
}

// x = q·d + m with 5-bit q.
function dequantQ5_1(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 24 * b;
    const y = dO + 32 * b;
    const d = readHalf(src, o, H);
    const m = readHalf(src, o + 2, H);
    const qh = readU32(src, o + 4);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j]!;
      const q0 = (q & 15) | (((qh >>> j) & 1) << 4);
      const q1 = (q >>> 4) | (((qh >>> (j + 16)) & 1) << 4);
      dst[y + j] = fr(fr(q0 * d) + m);
      dst[y + j + 16] = fr(fr(q1 * d) + m);
    }
  }
}

// x = q·d with signed 8-bit q.
function dequantQ8_0(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 34 * b;
    const y = dO + 32 * b;
    const d = readHalf(src, o, H);
    for (let j = 0; j < 32; j++) dst[y + j] = fr(int8(src[o + 2 + j]!) * d);
  }
}

// The 12 scale bytes of Q4_K/Q5_K hold eight 6-bit scales and eight 6-bit mins: sub-blocks 0-3 in the low 6 bits of
// bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 in the nibbles of bytes 8-11 plus the top 2 bits of bytes 0-7.
function scaleK(src: Uint8Array, s: number, j: number): number {
  return j < 4 ? src[s + j]! & 63 : (src[s + j + 4]! & 15) | ((src[s + j - 4]! >>> 6) << 4);
}
function minK(src: Uint8Array, s: number, j: number): number {
  return j < 4 ? src[s + j + 4]! & 63 : (src[s + j + 4]! >>> 4) | ((src[s + j]! >>> 6) << 4);
}

// Sub-block j (32 elements) of a super-block: x = (d·scale_j)·q − dmin·min_j. Elements 64k..64k+31 are the low
// nibbles and 64k+32..64k+63 the high nibbles of qs[32k..32k+31].
function dequantQ4_K(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 144 * b;
    const y0 = dO + 256 * b;
    const d = readHalf(src, o, H);
    const dmin = readHalf(src, o + 2, H);
    for (let k = 0; k < 4; k++) {
      const d1 = fr(d * scaleK(src, o + 4, 2 * k));
      const m1 = fr(dmin * minK(src, o + 4, 2 * k));
      const d2 = fr(d * scaleK(src, o + 4, 2 * k + 1));
      const m2 = fr(dmin * minK(src, o + 4, 2 * k + 1));
      const qs = o + 16 + 32 * k;
      const y = y0 + 64 * k;
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l]!;
        dst[y + l] = fr(fr(d1 * (q & 15)) - m1);
        dst[y + 32 + l] = fr(fr(d2 * (q >>> 4)) - m2);
      }
    }
  }
}

// As Q4_K with a 5th bit per element: bit 2k of qh[l] for element 64k + l, bit 2k + 1 for element 64k + 32 + l.
function dequantQ5_K(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 176 * b;
    const y0 = dO + 256 * b;
    const d = readHalf(src, o, H);
    const dmin = readHalf(src, o + 2, H);
    const qh = o + 16;
    for (let k = 0; k < 4; k++) {
      const d1 = fr(d * scaleK(src, o + 4, 2 * k));
      const m1 = fr(dmin * minK(src, o + 4, 2 * k));
      const d2 = fr(d * scaleK(src, o + 4, 2 * k + 1));
      const m2 = fr(dmin * minK(src, o + 4, 2 * k + 1));
      const qs = o + 48 + 32 * k;
      const y = y0 + 64 * k;
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l]!;
        const h = src[qh + l]! >>> (2 * k);
        dst[y + l] = fr(fr(d1 * ((q & 15) | ((h & 1) << 4))) - m1);
        dst[y + 32 + l] = fr(fr(d2 * ((q >>> 4) | ((h & 2) << 3))) - m2);
      }
    }
  }
}

// x = (d·scale)·(q − 32), q 6 bits: 4 in ql, 2 in qh; 16 signed 8-bit scales of 16 elements each. Each 128-element
// half uses 64 ql bytes and 32 qh bytes: element l, l+32, l+64, l+96 take ql[l] low, ql[l+32] low, ql[l] high,
// ql[l+32] high, and bits 0-1, 2-3, 4-5, 6-7 of qh[l].
function dequantQ6_K(src: Uint8Array, so: number, dst: Float32Array, dO: number, nb: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const o = so + 210 * b;
    const d = readHalf(src, o + 208, H);
    for (let half = 0; half < 2; half++) {
      const ql = o + 64 * half;
      const qh = o + 128 + 32 * half;
      const sc = o + 192 + 8 * half;
      const y = dO + 256 * b + 128 * half;
      for (let l = 0; l < 32; l++) {
        const is = l >>> 4;
        const h = src[qh + l]!;
        const q1 = ((src[ql + l]! & 15) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 15) | (((h >>> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >>> 4) | (((h >>> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >>> 4) | (((h >>> 6) & 3) << 4)) - 32;
        dst[y + l] = fr(fr(d * int8(src[sc + is]!)) * q1);
        dst[y + l + 32] = fr(fr(d * int8(src[sc + is + 2]!)) * q2);
        dst[y + l + 64] = fr(fr(d * int8(src[sc + is + 4]!)) * q3);
        dst[y + l + 96] = fr(fr(d * int8(src[sc + is + 6]!)) * q4);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Quantisation: ggml's quantize_row_*_ref, operation for operation in float32.

function quantF16(src: Float32Array, so: number, n: number, dst: Uint8Array, dO: number): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset + 4 * so, n); // bits, so a NaN keeps its sign
  for (let i = 0; i < n; i++) {
    const h = floatBitsToHalf(bits[i]!);
    dst[dO + 2 * i] = h & 0xff;
    dst[dO + 2 * i + 1] = h >>> 8;
  }
}

function quantBF16(src: Float32Array, so: number, n: number, dst: Uint8Array, dO: number): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset + 4 * so, n);
  for (let i = 0; i < n; i++) {
    const h = floatBitsToBf16(bits[i]!);
    dst[dO + 2 * i] = h & 0xff;
    dst[dO + 2 * i + 1] = h >>> 8;
  }
}

// d = (the value of largest magnitude)/−8, so that value maps to q = 0 exactly; q = min(15, (int8)(x/d + 8.5)).
/** The value of largest magnitude among x[xb .. xb + 32), the first on ties: what ggml scales Q4_0 and Q5_0 blocks from. */
function signedAbsMax(x: Float32Array, xb: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[xb + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

function quantQ4_0(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let b = 0; b < nb; b++) {
    const xb = xo + 32 * b;
    const o = yo + 18 * b;
    const max = signedAbsMax(x, xb);
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeHalf(y, o, d);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(x[xb + j]! * id);
      const x1 = fr(x[xb + 16 + j]! * id);
      const q0 = Math.min(15, int8(cvtt(fr(x0 + 8.5)))) & 0xff; // uint8_t of MIN(15, (int8_t)…): may be ≥ 16
      const q1 = Math.min(15, int8(cvtt(fr(x1 + 8.5)))) & 0xff;
      y[o + 2 + j] = q0 | (q1 << 4); // the Uint8Array store keeps the low byte, as C's uint8_t does
    }
  }
}

/** [min, max] of x[xb .. xb + 32), starting from ±FLT_MAX as ggml does (Q4_1 and Q5_1); written into minMax. */
const minMax = new Float64Array(2);
function blockMinMax(x: Float32Array, xb: number): void {
  let min = FLT_MAX;
  let max = -FLT_MAX;
  for (let j = 0; j < 32; j++) {
    const v = x[xb + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  minMax[0] = min;
  minMax[1] = max;
}

// d = (max − min)/15, m = min; q = min(15, (int8)((x − min)/d + 0.5)).
function quantQ4_1(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let b = 0; b < nb; b++) {
    const xb = xo + 32 * b;
    const o = yo + 20 * b;
    blockMinMax(x, xb);
    const min = minMax[0]!, max = minMax[1]!;
    const d = fr(fr(max - min) / 15);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeHalf(y, o, d);
    writeHalf(y, o + 2, min);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(x[xb + j]! - min) * id);
      const x1 = fr(fr(x[xb + 16 + j]! - min) * id);
      const q0 = Math.min(15, int8(cvtt(fr(x0 + 0.5)))) & 0xff;
      const q1 = Math.min(15, int8(cvtt(fr(x1 + 0.5)))) & 0xff;
      y[o + 4 + j] = q0 | (q1 << 4);
    }
  }
}

function writeU32(dst: Uint8Array, o: number, v: number): void {
  dst[o] = v & 0xff;
  dst[o + 1] = (v >>> 8) & 0xff;
  dst[o + 2] = (v >>> 16) & 0xff;
  dst[o + 3] = v >>> 24;
}

// As Q4_0 with 5 bits: d = max/−16, q = min(31, (int8)(x/d + 16.5)).
function quantQ5_0(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let b = 0; b < nb; b++) {
    const xb = xo + 32 * b;
    const o = yo + 22 * b;
    const max = signedAbsMax(x, xb);
    const d = fr(max / -16);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeHalf(y, o, d);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const x0 = fr(x[xb + j]! * id);
      const x1 = fr(x[xb + 16 + j]! * id);
      const q0 = Math.min(31, int8(cvtt(fr(x0 + 16.5)))) & 0xff;
      const q1 = Math.min(31, int8(cvtt(fr(x1 + 16.5)))) & 0xff;
      y[o + 6 + j] = (q0 & 15) | ((q1 & 15) << 4);
      qh |= ((q0 >>> 4) & 1) << j;
      qh |= ((q1 >>> 4) & 1) << (j + 16);
    }
    writeU32(y, o + 2, qh >>> 0);
  }
}

// As Q4_1 with 5 bits: d = (max − min)/31, q = (uint8)((x − min)/d + 0.5), no clamp.
function quantQ5_1(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let b = 0; b < nb; b++) {
    const xb = xo + 32 * b;
    const o = yo + 24 * b;
    blockMinMax(x, xb);
    const min = minMax[0]!, max = minMax[1]!;
    const d = fr(fr(max - min) / 31);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeHalf(y, o, d);
    writeHalf(y, o + 2, min);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(x[xb + j]! - min) * id);
      const x1 = fr(fr(x[xb + 16 + j]! - min) * id);
      const q0 = cvtt(fr(x0 + 0.5)) & 0xff;
      const q1 = cvtt(fr(x1 + 0.5)) & 0xff;
      y[o + 8 + j] = (q0 & 15) | ((q1 & 15) << 4);
      qh |= ((q0 >>> 4) & 1) << j;
      qh |= ((q1 >>> 4) & 1) << (j + 16);
    }
    writeU32(y, o + 4, qh >>> 0);
  }
}

// d = max|x|/127, q = roundf(x/d) (half away from zero, unlike the K-quants' nearest_int).
function quantQ8_0(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let b = 0; b < nb; b++) {
    const xb = xo + 32 * b;
    const o = yo + 34 * b;
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[xb + j]!);
      amax = amax > a ? amax : a; // MAX(amax, fabsf(v))
    }
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    writeHalf(y, o, d);
    for (let j = 0; j < 32; j++) y[o + 2 + j] = cvtt(roundAway(fr(x[xb + j]! * id)));
  }
}

// Scratch for the K-quants (C's stack arrays L, Laux, weights, scales, mins).
const kL = new Uint8Array(256);
const kLaux = new Uint8Array(32);
const kWeights = new Float32Array(32);
const kScales = new Float32Array(16);
const kMins = new Float32Array(8);
let qkxMin = 0; // make_qkx2_quants's second result (*the_min)

/**
 * ggml's make_qkx2_quants with use_mad = false: the affine fit x ≈ scale·L − the_min, L in 0..nmax, of one group of
 * n values under weights w, trying nstep + 1 grid scales around nmax/(max − min) and keeping the one with the least
 * weighted squared error. Writes L into `L[lo..]`, returns the scale and leaves the_min in qkxMin.
 */
function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number,
  rmin: number, rdelta: number, nstep: number,
): number {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = w[0]!;
  let sumX = fr(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = fr(sumW + w[i]!);
    sumX = fr(sumX + fr(w[i]! * v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    qkxMin = fr(-min);
    return 0;
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(x[xo + i]! - min)))));
    L[lo + i] = l;
    const diff = fr(fr(fr(scale * l) + min) - x[xo + i]!);
    bestError = fr(bestError + fr(w[i]! * fr(diff * diff)));
  }
  for (let is = 0; is <= nstep; is++) {
    // max − min afresh each step: a better fit below replaces min, and the grid moves with it (as in ggml)
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(v - min)))));
      kLaux[i] = l;
      const wl = fr(w[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * v));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        const diff = fr(fr(fr(thisScale * kLaux[i]!) + thisMin) - x[xo + i]!);
        curError = fr(curError + fr(w[i]! * fr(diff * diff)));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = kLaux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  qkxMin = fr(-min);
  return scale;
}

/**
 * Q4_K (nmax 15) and Q5_K (nmax 31): each 32-element sub-block gets an affine fit (make_qkx2_quants, weights
 * rms(x) + |x|); the 8 scales and 8 mins are quantised to 6 bits against the super-block's largest (d, dmin as
 * halves); then every element is re-quantised against its sub-block's stored (rounded) scale and min.
 */
function quantQxK(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, nmax: 15 | 31): void {
  const q5 = nmax === 31;
  const bytes = q5 ? 176 : 144;
  const rmin = q5 ? fr(-0.5) : -1;
  const nstep = q5 ? 15 : 20;
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const xb = xo + 256 * b;
    const o = yo + bytes * b;
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[xb + 32 * j + l]! * x[xb + 32 * j + l]!));
      const avX = fr(Math.sqrt(fr(sumX2 / 32)));
      for (let l = 0; l < 32; l++) kWeights[l] = fr(avX + Math.abs(x[xb + 32 * j + l]!));
      const scale = makeQkx2Quants(32, nmax, x, xb + 32 * j, kWeights, kL, 32 * j, rmin, POINT_ONE, nstep);
      kScales[j] = scale;
      kMins[j] = qkxMin;
      if (scale > maxScale) maxScale = scale;
      if (qkxMin > maxMin) maxMin = qkxMin;
    }
    const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
    const s = o + 4;
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(fr(invScale * kScales[j]!)) & 0xff); // uint8_t, then MIN(63, …)
      const lm = Math.min(63, nearestInt(fr(invMin * kMins[j]!)) & 0xff);
      if (j < 4) {
        y[s + j] = ls;
        y[s + j + 4] = lm;
      } else {
        y[s + j + 4] = (ls & 15) | ((lm & 15) << 4);
        y[s + j - 4] |= (ls >>> 4) << 6;
        y[s + j] |= (lm >>> 4) << 6;
      }
    }
    writeHalf(y, o, fr(maxScale / 63));
    writeHalf(y, o + 2, fr(maxMin / 63));
    const dAll = readHalf(y, o, H);
    const dminAll = readHalf(y, o + 2, H);
    for (let j = 0; j < 8; j++) {
      const d = fr(dAll * scaleK(y, s, j));
      if (d === 0) continue; // a zero scale keeps make_qkx2_quants's L for this sub-block (C: `if (!d)`; NaN goes on)
      const dm = fr(dminAll * minK(y, s, j));
      for (let l = 0; l < 32; l++) {
        kL[32 * j + l] = Math.max(0, Math.min(nmax, nearestInt(fr(fr(x[xb + 32 * j + l]! + dm) / d))));
      }
    }
    if (!q5) {
      for (let k = 0; k < 4; k++) {
        for (let l = 0; l < 32; l++) y[o + 16 + 32 * k + l] = kL[64 * k + l]! | (kL[64 * k + 32 + l]! << 4);
      }
    } else {
      const qh = o + 16;
      const ql = o + 48;
      y.fill(0, qh, qh + 32);
      for (let k = 0; k < 4; k++) {
        for (let l = 0; l < 32; l++) {
          let l1 = kL[64 * k + l]!;
          let l2 = kL[64 * k + 32 + l]!;
          if (l1 > 15) {
            l1 -= 16;
            y[qh + l] |= 1 << (2 * k);
          }
          if (l2 > 15) {
            l2 -= 16;
            y[qh + l] |= 2 << (2 * k);
          }
          y[ql + 32 * k + l] = l1 | (l2 << 4);
        }
      }
    }
  }
}

const kL6 = new Uint8Array(256); // Q6_K's L (int8_t in C; its values are 0..63)

/**
 * ggml's make_qx_quants with rmse_type = 1 and no importance weights (the only use, Q6_K's): a symmetric fit
 * x ≈ scale·(L − nmax), L in 0..2·nmax − 1, weights x², over 19 candidate scales (−(nmax + 0.1·is)/max, is = −9..9).
 * Writes L into kL6[lo..] and returns the scale.
 */
function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) kL6[lo + i] = 0; // 0, not nmax: ggml's "all zero" marker
    return 0;
  }
  let iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * v))));
    kL6[lo + i] = l + nmax;
    const w = fr(v * v);
    sumlx = fr(sumlx + fr(fr(w * v) * l));
    suml2 = fr(suml2 + fr(fr(w * l) * l));
  }
  let scale = suml2 !== 0 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(POINT_ONE * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * v))));
      const w = fr(v * v);
      sumlx = fr(sumlx + fr(fr(w * v) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; i++) {
        kL6[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * x[xo + i]!))));
      }
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}

/**
 * Q6_K: a symmetric fit per 16-element group (make_qx_quants), the 16 group scales quantised to signed 8 bits
 * against the one of largest magnitude (−128 at that one, d = its scale/−128 as a half), then every element
 * re-quantised against its group's stored scale.
 */
function quantQ6_K(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  const H = halfTable();
  for (let b = 0; b < nb; b++) {
    const xb = xo + 256 * b;
    const o = yo + 210 * b;
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const scale = makeQxQuants(16, 32, x, xb + 16 * ib, 16 * ib);
      kScales[ib] = scale;
      if (Math.abs(scale) > maxAbsScale) {
        maxAbsScale = Math.abs(scale);
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      y.fill(0, o, o + 210);
      continue;
    }
    const iscale = fr(-128 / maxScale);
    writeHalf(y, o + 208, fr(1 / iscale));
    for (let ib = 0; ib < 16; ib++) y[o + 192 + ib] = Math.min(127, nearestInt(fr(iscale * kScales[ib]!)));
    const dAll = readHalf(y, o + 208, H);
    for (let j = 0; j < 16; j++) {
      const d = fr(dAll * int8(y[o + 192 + j]!));
      if (d === 0) continue;
      for (let i = 0; i < 16; i++) {
        kL6[16 * j + i] = Math.max(-32, Math.min(31, nearestInt(fr(x[xb + 16 * j + i]! / d)))) + 32;
      }
    }
    for (let half = 0; half < 2; half++) {
      const ql = o + 64 * half;
      const qh = o + 128 + 32 * half;
      const L = 128 * half;
      for (let l = 0; l < 32; l++) {
        const a = kL6[L + l]!;
        const c = kL6[L + l + 32]!;
        const e = kL6[L + l + 64]!;
        const g = kL6[L + l + 96]!;
        y[ql + l] = (a & 15) | ((e & 15) << 4);
        y[ql + l + 32] = (c & 15) | ((g & 15) << 4);
        y[qh + l] = (a >>> 4) | ((c >>> 4) << 2) | ((e >>> 4) << 4) | ((g >>> 4) << 6);
      }
    }
  }
}
