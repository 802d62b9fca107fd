// GGUF writer (version 3). Spec: ggml's docs/gguf.md; src/io/gguf.ts is the matching reader.
//
// Layout written:
//   "GGUF" | u32 version = 3 | u64 tensor count | u64 metadata count
//   metadata: key (u64 length + UTF-8) | u32 value type | value      (arrays: u32 item type | u64 count | items)
//   tensor infos: name (u64 length + UTF-8) | u32 n_dims | u64 dims[n_dims] (innermost first) | u32 ggml type |
//                 u64 offset of the tensor's bytes from the start of the data section
//   zero padding up to a multiple of the alignment, then every tensor's bytes, each one padded with zeros to a
//   multiple of the alignment (so every offset is aligned, as llama.cpp's loader checks).
// The alignment is `general.alignment` (a u32 multiple of 8) when the metadata holds it, else 32.
//
// Values carry their GGUF type explicitly: llama.cpp checks the type of the keys it reads (e.g. a u32 token id
// stored as i32 is rejected), and JavaScript numbers do not say which type they came from. To copy keys from an
// existing file with their types intact, readGgufMetadataTyped reads a file's metadata in this typed form.
//
// The file is written through writeFileAtomic: a reader sees the old file or the complete new one.

import { endianness } from "node:os";
import { readFileSync } from "node:fs";
import { inputError, unsupportedError } from "../errors.js";
import { writeFileAtomic } from "./atomic.js";
import { f32ToBf16, f32ToF16 } from "./dtype.js";

/** GGUF metadata value types, with their numbers in the file. */
export const GgufType = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;
export type GgufTypeName = keyof typeof GgufType;
type NumberTypeName = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64";
type BigTypeName = "u64" | "i64";

export type GgufMetaValue =
  | { type: NumberTypeName; value: number }
  | { type: BigTypeName; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | GgufMetaArray;

/** An array's items all have `itemType`; for nested arrays (itemType "array") every item is itself a GgufMetaArray. */
export type GgufMetaArray =
  | { type: "array"; itemType: NumberTypeName; value: readonly number[] }
  | { type: "array"; itemType: BigTypeName; value: readonly bigint[] }
  | { type: "array"; itemType: "bool"; value: readonly boolean[] }
  | { type: "array"; itemType: "string"; value: readonly string[] }
  | { type: "array"; itemType: "array"; value: readonly GgufMetaArray[] };

/** Shorthands for building typed values. */
export const gv = {
  u8: (value: number): GgufMetaValue => ({ type: "u8", value }),
  i8: (value: number): GgufMetaValue => ({ type: "i8", value }),
  u16: (value: number): GgufMetaValue => ({ type: "u16", value }),
  i16: (value: number): GgufMetaValue => ({ type: "i16", value }),
  u32: (value: number): GgufMetaValue => ({ type: "u32", value }),
  i32: (value: number): GgufMetaValue => ({ type: "i32", value }),
  f32: (value: number): GgufMetaValue => ({ type: "f32", value }),
  f64: (value: number): GgufMetaValue => ({ type: "f64", value }),
  u64: (value: bigint): GgufMetaValue => ({ type: "u64", value }),
  i64: (value: bigint): GgufMetaValue => ({ type: "i64", value }),
  bool: (value: boolean): GgufMetaValue => ({ type: "bool", value }),
  str: (value: string): GgufMetaValue => ({ type: "string", value }),
  strings: (value: readonly string[]): GgufMetaArray => ({ type: "array", itemType: "string", value }),
  f32s: (value: readonly number[]): GgufMetaArray => ({ type: "array", itemType: "f32", value }),
  i32s: (value: readonly number[]): GgufMetaArray => ({ type: "array", itemType: "i32", value }),
};

/** Tensor storage types the writer produces (ggml type numbers). */
export const GgufTensorType = { F32: 0, F16: 1, BF16: 30 } as const;
export type GgufTensorTypeName = keyof typeof GgufTensorType;

export interface GgufTensorToWrite {
  name: string;
  /** Innermost first, as GGUF stores them: a row-major [out][in] matrix has dims [in, out]. */
  dims: readonly number[];
  type: GgufTensorTypeName;
  /** Row-major values (the innermost dim varies fastest); converted to `type` on write. Ignored with `blocks`. */
  data: Float32Array;
  /** Already-encoded GGML blocks (a quantised tensor, src/quant/ggml.ts) of ggml type number `blockType`, written
   *  as they are; `type` is then ignored. */
  blocks?: { bytes: Uint8Array; blockType: number };
}

export interface GgufToWrite {
  /** Written in this order. */
  metadata: ReadonlyArray<readonly [string, GgufMetaValue]>;
  /** Written in this order. */
  tensors: readonly GgufTensorToWrite[];
}

const DEFAULT_ALIGNMENT = 32;
const GGML_MAX_NAME = 64; // ggml's tensor name buffer, NUL included
const MAX_DIMS = 4;

const INT_RANGE: Record<"u8" | "i8" | "u16" | "i16" | "u32" | "i32", [number, number]> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff], u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};

/** Appends little-endian values to a growing buffer. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void { this.room(4); this.buf.writeUInt32LE(v, this.length); this.length += 4; }
  u64(v: number | bigint): void { this.room(8); this.buf.writeBigUInt64LE(BigInt(v), this.length); this.length += 8; }
  str(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.u64(n);
    this.room(n);
    this.buf.write(s, this.length, "utf8");
    this.length += n;
  }
  scalar(type: Exclude<GgufTypeName, "array" | "string">, v: number | bigint | boolean): void {
    const size = type === "u8" || type === "i8" || type === "bool" ? 1 : type === "u16" || type === "i16" ? 2 : type === "u64" || type === "i64" || type === "f64" ? 8 : 4;
    this.room(size);
    const b = this.buf;
    const o = this.length;
    switch (type) {
      case "u8": b.writeUInt8(v as number, o); break;
      case "i8": b.writeInt8(v as number, o); break;
      case "u16": b.writeUInt16LE(v as number, o); break;
      case "i16": b.writeInt16LE(v as number, o); break;
      case "u32": b.writeUInt32LE(v as number, o); break;
      case "i32": b.writeInt32LE(v as number, o); break;
      case "f32": b.writeFloatLE(v as number, o); break;
      case "f64": b.writeDoubleLE(v as number, o); break;
      case "bool": b.writeUInt8(v ? 1 : 0, o); break;
      case "u64": b.writeBigUInt64LE(v as bigint, o); break;
      case "i64": b.writeBigInt64LE(v as bigint, o); break;
    }
    this.length += size;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function checkScalar(key: string, type: GgufTypeName, v: unknown): void {
  const bad = (why: string): never => {
    throw new Error(`GGUF writer: metadata ${key}: ${JSON.stringify(typeof v === "bigint" ? String(v) : v)} ${why}`);
  };
  switch (type) {
    case "u8": case "i8": case "u16": case "i16": case "u32": case "i32": {
      const [lo, hi] = INT_RANGE[type];
      if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) bad(`is not a ${type}`);
      return;
    }
    case "f32": case "f64":
      if (typeof v !== "number") bad(`is not a number`);
      return;
    case "u64":
      if (typeof v !== "bigint" || v < 0n || v >= 1n << 64n) bad("is not a u64 (give a bigint)");
      return;
    case "i64":
      if (typeof v !== "bigint" || v < -(1n << 63n) || v >= 1n << 63n) bad("is not an i64 (give a bigint)");
      return;
    case "bool":
      if (typeof v !== "boolean") bad("is not a boolean");
      return;
    case "string":
      if (typeof v !== "string") bad("is not a string");
      return;
    case "array":
      bad("cannot be checked as a scalar");
  }
}

function writeValue(w: ByteWriter, key: string, v: GgufMetaValue): void {
  w.u32(GgufType[v.type]);
  writeBody(w, key, v);
}

function writeBody(w: ByteWriter, key: string, v: GgufMetaValue): void {
  if (v.type === "array") {
    w.u32(GgufType[v.itemType]);
    w.u64(v.value.length);
    if (v.itemType === "array") {
      for (const item of v.value as readonly GgufMetaArray[]) {
        if (item?.type !== "array") throw new Error(`GGUF writer: metadata ${key}: an item of an array of arrays is not an array`);
        writeBody(w, key, item);
      }
      return;
    }
    for (const item of v.value) {
      checkScalar(key, v.itemType, item);
      if (v.itemType === "string") w.str(item as string);
      else w.scalar(v.itemType, item as number | bigint | boolean);
    }
    return;
  }
  checkScalar(key, v.type, v.value);
  if (v.type === "string") w.str(v.value);
  else w.scalar(v.type, v.value);
}

/** The alignment a file with this metadata uses: general.alignment if present (a u32 multiple of 8), else 32. */
export function ggufAlignment(metadata: GgufToWrite["metadata"]): number {
  const entry = metadata.find(([k]) => k === "general.alignment");
  if (!entry) return DEFAULT_ALIGNMENT;
  const v = entry[1];
  if (v.type !== "u32" || v.value === 0 || v.value % 8 !== 0)
    throw new Error(`GGUF writer: general.alignment must be a u32 multiple of 8, got ${v.type} ${String(v.value)}`);
  return v.value;
}

const ELEMENT_BYTES: Record<GgufTensorTypeName, number> = { F32: 4, F16: 2, BF16: 2 };
const littleEndian = endianness() === "LE";

/** A tensor's bytes in the file's type. F32 on a little-endian machine is a view of the caller's array, not a copy. */
function tensorBytes(t: GgufTensorToWrite): Uint8Array {
  if (t.blocks) return t.blocks.bytes;
  const n = t.data.length;
  switch (t.type) {
    case "F32": {
      if (littleEndian) return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const b = Buffer.alloc(4 * n);
      for (let i = 0; i < n; i++) b.writeFloatLE(t.data[i]!, 4 * i);
      return b;
    }
    case "F16":
    case "BF16": {
      const conv = t.type === "F16" ? f32ToF16 : f32ToBf16;
      const b = Buffer.alloc(2 * n);
      for (let i = 0; i < n; i++) b.writeUInt16LE(conv(t.data[i]!), 2 * i);
      return b;
    }
  }
}

/**
 * The file as a list of chunks (header, then each tensor's bytes and padding), for writing or hashing. Throws a
 * plain Error for malformed input: the metadata and tensors come from tsdpo's own code, not from the user.
 */
export function ggufChunks(file: GgufToWrite): Uint8Array[] {
  const alignment = ggufAlignment(file.metadata);
  const w = new ByteWriter();
  w.u32(0x46554747); // "GGUF" read as a little-endian u32
  w.u32(3);
  w.u64(file.tensors.length);
  w.u64(file.metadata.length);
  const keys = new Set<string>();
  for (const [key, value] of file.metadata) {
    // the spec asks for ASCII keys of at most 65535 bytes; llama.cpp refuses a file with a repeated key
    if (key.length === 0 || key.length > 65535 || !/^[\x20-\x7e]+$/.test(key)) throw new Error(`GGUF writer: bad metadata key ${JSON.stringify(key)}`);
    if (keys.has(key)) throw new Error(`GGUF writer: metadata key ${key} appears twice`);
    keys.add(key);
    w.str(key);
    writeValue(w, key, value);
  }
  const names = new Set<string>();
  const padded: number[] = [];
  let offset = 0;
  for (const t of file.tensors) {
    if (t.name.length === 0 || Buffer.byteLength(t.name, "utf8") >= GGML_MAX_NAME)
      throw new Error(`GGUF writer: tensor name ${JSON.stringify(t.name)} must have 1 to ${GGML_MAX_NAME - 1} bytes`);
    if (names.has(t.name)) throw new Error(`GGUF writer: tensor ${t.name} appears twice`);
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > MAX_DIMS || t.dims.some((d) => !Number.isSafeInteger(d) || d < 1))
      throw new Error(`GGUF writer: tensor ${t.name} has dims [${t.dims.join(", ")}]; need 1 to ${MAX_DIMS} positive sizes`);
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (!t.blocks && n !== t.data.length) throw new Error(`GGUF writer: tensor ${t.name} has dims [${t.dims.join(", ")}] but ${t.data.length} values`);
    if (!t.blocks && !(t.type in GgufTensorType)) throw new Error(`GGUF writer: tensor ${t.name} has unsupported type ${String(t.type)}`);
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.blocks ? t.blocks.blockType : GgufTensorType[t.type]);
    w.u64(offset);
    const size = t.blocks ? t.blocks.bytes.byteLength : n * ELEMENT_BYTES[t.type];
    const pad = (alignment - (size % alignment)) % alignment;
    padded.push(pad);
    offset += size + pad;
  }
  w.pad(alignment);
  const chunks: Uint8Array[] = [w.bytes()];
  const zeros = new Uint8Array(alignment);
  file.tensors.forEach((t, i) => {
    chunks.push(tensorBytes(t));
    if (padded[i]! > 0) chunks.push(zeros.subarray(0, padded[i]!));
  });
  return chunks;
}

/** Writes a GGUF v3 file atomically. Returns its size in bytes. */
export function writeGguf(path: string, file: GgufToWrite): number {
  const chunks = ggufChunks(file);
  writeFileAtomic(path, chunks);
  return chunks.reduce((a, c) => a + c.byteLength, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Typed metadata reading, for copying keys from one GGUF file into another with their exact types.

const TYPE_NAMES = Object.fromEntries(Object.entries(GgufType).map(([k, v]) => [v, k])) as Record<number, GgufTypeName>;

/**
 * The metadata of a GGUF file (versions 2 and 3) with every value's GGUF type, in file order. Reads only the
 * header. src/io/gguf.ts's readGguf has already validated files loaded as models; this walker checks bounds again
 * so that it never reads past the buffer.
 */
export function readGgufMetadataTyped(path: string, buffer?: Buffer): Array<[string, GgufMetaValue]> {
  const b = buffer ?? readFileSync(path);
  let pos = 0;
  const corrupt = (what: string): never => {
    throw inputError(`${path}: GGUF header is corrupt or truncated (${what} at offset ${pos}); re-download or re-convert the model`);
  };
  const need = (n: number, what: string): void => {
    if (pos + n > b.length) corrupt(what);
  };
  const u32 = (what: string): number => { need(4, what); const v = b.readUInt32LE(pos); pos += 4; return v; };
  const u64 = (what: string): number => {
    need(8, what);
    const v = b.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(b.length)) corrupt(`${what} ${v}`);
    return Number(v);
  };
  const str = (what: string): string => {
    const n = u64(`length of ${what}`);
    need(n, what);
    const s = b.toString("utf8", pos, pos + n);
    pos += n;
    return s;
  };
  const typeName = (t: number, key: string): GgufTypeName => {
    const name = TYPE_NAMES[t];
    if (name === undefined) throw inputError(`${path}: metadata key ${key} has unknown value type ${t}; the file is corrupt`);
    return name;
  };
  const scalar = (type: Exclude<GgufTypeName, "array">, key: string): number | bigint | boolean | string => {
    if (type === "string") return str(`value of ${key}`);
    const size = type === "u8" || type === "i8" || type === "bool" ? 1 : type === "u16" || type === "i16" ? 2 : type === "u64" || type === "i64" || type === "f64" ? 8 : 4;
    need(size, `value of ${key}`);
    const o = pos;
    pos += size;
    switch (type) {
      case "u8": return b.readUInt8(o);
      case "i8": return b.readInt8(o);
      case "u16": return b.readUInt16LE(o);
      case "i16": return b.readInt16LE(o);
      case "u32": return b.readUInt32LE(o);
      case "i32": return b.readInt32LE(o);
      case "f32": return b.readFloatLE(o);
      case "f64": return b.readDoubleLE(o);
      case "bool": return b.readUInt8(o) !== 0;
      case "u64": return b.readBigUInt64LE(o);
      case "i64": return b.readBigInt64LE(o);
    }
  };
  const array = (key: string): GgufMetaArray => {
    const itemType = typeName(u32(`item type of ${key}`), key);
    const n = u64(`length of ${key}`);
    const items: unknown[] = new Array(n);
    for (let i = 0; i < n; i++) items[i] = itemType === "array" ? array(key) : scalar(itemType, key);
    return { type: "array", itemType, value: items } as GgufMetaArray;
  };

  if (b.length < 24 || b.readUInt32LE(0) !== 0x46554747) throw inputError(`${path}: not a GGUF file (the first 4 bytes are not "GGUF")`);
  pos = 4;
  const version = u32("version");
  if (version !== 2 && version !== 3) throw unsupportedError(`${path}: GGUF version ${version} is not supported (tsdpo reads versions 2 and 3)`);
  u64("tensor count");
  const kvCount = u64("metadata count");
  const out: Array<[string, GgufMetaValue]> = [];
  for (let i = 0; i < kvCount; i++) {
    const key = str(`metadata key #${i}`);
    const type = typeName(u32(`value type of ${key}`), key);
    out.push([key, type === "array" ? array(key) : ({ type, value: scalar(type, key) } as GgufMetaValue)]);
  }
  return out;
}
