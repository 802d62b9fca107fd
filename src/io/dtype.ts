// Half-precision conversions shared by the GGUF and safetensors readers and writers.

import type { Buf } from "../backend/contract.js";

/** A new zeroed array of `like`'s float type (the fused-layout splits keep float64 gradients float64 in tests). */
export const floatArrayLike = (like: Buf, n: number): Buf => (like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n));

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (or zero)
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function bf16ToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** float32 -> bfloat16 bits, round to nearest even (what PyTorch's .to(torch.bfloat16) does). */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return (bits >> 16) | 0x40; // keep NaN a NaN
  const rounding = 0x7fff + ((bits >> 16) & 1);
  return ((bits + rounding) >>> 16) & 0xffff;
}

/** float32 -> IEEE half bits, round to nearest even, overflow to infinity. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}
