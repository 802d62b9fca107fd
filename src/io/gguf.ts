// GGUF reader (versions 2 and 3). Spec: ggml's docs/gguf.md.
//
// Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata key/values, the tensor
// infos, padding to `general.alignment` (default 32), then the tensor data. All integers are little-endian.
// A tensor's dims are listed innermost first (ne[0] is the contiguous one), so a row-major [out][in] matrix has
// dims [in, out].

import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { inputError, unsupportedError } from "../errors.js";
import { f16ToF32, bf16ToF32 } from "./dtype.js";

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  dims: number[]; // innermost first, as stored
  type: GgmlType;
  offset: number; // byte offset relative to the start of the data section
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
  dataOffset: number; // absolute byte offset of the data section
  buffer: Buffer;
}

export enum GgmlType {
  F32 = 0,
  F16 = 1,
  BF16 = 30,
}
const GGML_TYPE_NAMES: Record<number, string> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
  12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 30: "BF16",
};
export function ggmlTypeName(t: number): string {
  return GGML_TYPE_NAMES[t] ?? `type ${t}`;
}

enum ValueType { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 }

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32

const MAX_ARRAY_DEPTH = 16;
const VALUE_TYPE_NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"];

/** The fewest bytes a value of this type takes (a string or array is at least its u64 length). */
function minValueBytes(type: number): number {
  switch (type) {
    case ValueType.U8: case ValueType.I8: case ValueType.BOOL: return 1;
    case ValueType.U16: case ValueType.I16: return 2;
    case ValueType.U32: case ValueType.I32: case ValueType.F32: return 4;
    case ValueType.U64: case ValueType.I64: case ValueType.F64: case ValueType.STRING: return 8;
    case ValueType.ARRAY: return 12;
    default: return 1; // an unknown type fails on its first item; the count must still not size an array
  }
}

class Cursor {
  pos = 0;
  depth = 0;
  constructor(readonly buf: Buffer, readonly path: string) {}
  need(n: number, what: string): void {
    if (this.pos + n > this.buf.length)
      throw inputError(
        `${this.path}: GGUF file is truncated (needed ${n} bytes for ${what} at offset ${this.pos}, ` +
          `file has ${this.buf.length}); re-download or re-convert the model`,
      );
  }
  u8(): number { this.need(1, "u8"); return this.buf.readUInt8(this.pos++); }
  u32(what = "u32"): number { this.need(4, what); const v = this.buf.readUInt32LE(this.pos); this.pos += 4; return v; }
  u64(what = "u64"): number {
    this.need(8, what);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw inputError(`${this.path}: ${what} at offset ${this.pos - 8} is ${v}, too large; the file is corrupt`);
    return Number(v);
  }
  str(what: string): string {
    const n = this.u64(`length of ${what}`);
    this.need(n, what);
    const s = this.buf.toString("utf8", this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  value(type: number, key: string): GgufValue {
    const b = this.buf;
    const scalar = (size: number, read: () => GgufValue): GgufValue => {
      this.need(size, `value of ${key}`);
      const v = read();
      this.pos += size;
      return v;
    };
    switch (type) {
      case ValueType.U8: return scalar(1, () => b.readUInt8(this.pos));
      case ValueType.I8: return scalar(1, () => b.readInt8(this.pos));
      case ValueType.U16: return scalar(2, () => b.readUInt16LE(this.pos));
      case ValueType.I16: return scalar(2, () => b.readInt16LE(this.pos));
      case ValueType.U32: return scalar(4, () => b.readUInt32LE(this.pos));
      case ValueType.I32: return scalar(4, () => b.readInt32LE(this.pos));
      case ValueType.F32: return scalar(4, () => b.readFloatLE(this.pos));
      case ValueType.BOOL: return scalar(1, () => b.readUInt8(this.pos) !== 0);
      case ValueType.STRING: return this.str(`value of ${key}`);
      case ValueType.U64: return scalar(8, () => b.readBigUInt64LE(this.pos));
      case ValueType.I64: return scalar(8, () => b.readBigInt64LE(this.pos));
      case ValueType.F64: return scalar(8, () => b.readDoubleLE(this.pos));
      case ValueType.ARRAY: {
        const at = this.pos;
        const itemType = this.u32(`item type of ${key}`);
        const n = this.u64(`length of ${key}`);
        // Every item takes at least minValueBytes, so a count the rest of the file cannot hold is a corrupt field;
        // checking it here keeps a bad count from sizing the array (or from a long walk to the truncation error).
        const room = this.buf.length - this.pos;
        if (n * minValueBytes(itemType) > room)
          throw inputError(
            `${this.path}: GGUF file is truncated or corrupt: array ${key} (at offset ${at}) claims ${n} items of ` +
              `${VALUE_TYPE_NAMES[itemType] ?? `type ${itemType}`}, at least ${n * minValueBytes(itemType)} bytes, but ` +
              `${room} follow (the file has ${this.buf.length}); re-download or re-convert the model`,
          );
        // Nested arrays recurse; llama.cpp reads no nesting at all, and a deep chain would overflow the stack.
        if (itemType === ValueType.ARRAY && ++this.depth > MAX_ARRAY_DEPTH)
          throw inputError(`${this.path}: array ${key} nests arrays more than ${MAX_ARRAY_DEPTH} deep; the file is corrupt`);
        const out: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(itemType, key);
        if (itemType === ValueType.ARRAY) this.depth--;
        return out;
      }
      default:
        throw inputError(`${this.path}: metadata key ${key} has unknown value type ${type}; the file is corrupt`);
    }
  }
}

/**
 * A GGUF file's metadata and tensor infos without its tensor data: a prefix of the file, grown until the header
 * parses (the vocabulary of a 128k-token model is a few MB). `buffer` holds only that prefix: what the fit planner
 * and tokenizer need before anything large is read.
 */
export function readGgufHeader(path: string): GgufFile {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    for (let want = 4 << 20; ; want *= 4) {
      const n = Math.min(size, want);
      const buf = Buffer.alloc(n);
      let got = 0;
      while (got < n) {
        const k = readSync(fd, buf, got, n - got, got);
        if (k === 0) break;
        got += k;
      }
      try {
        return readGguf(path, buf.subarray(0, got), size);
      } catch (err) {
        if (n >= size) throw err; // the whole file did not parse: the error is the file's
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** `fileSize`: the buffer is a prefix of a file of that size (readGgufHeader); tensor extents are checked against it. */
export function readGguf(path: string, buffer?: Buffer, fileSize?: number): GgufFile {
  const buf = buffer ?? readFileSync(path);
  const limit = fileSize ?? buf.length;
  const c = new Cursor(buf, path);
  if (buf.length < 4 || buf.readUInt32LE(0) !== GGUF_MAGIC)
    throw inputError(`${path}: not a GGUF file (the first 4 bytes are not "GGUF")`);
  c.pos = 4;
  const version = c.u32("version");
  if (version !== 2 && version !== 3)
    throw unsupportedError(`${path}: GGUF version ${version} is not supported (tsdpo reads versions 2 and 3)`);
  const tensorCount = c.u64("tensor count");
  const kvCount = c.u64("metadata count");
  // Every key/value takes at least 13 bytes (key length, value type, one byte of value) and every tensor info at
  // least 24 (name length, dim count, type, offset). A count the file cannot hold is a corrupt field; without this
  // check the reader would parse tensor data as headers and blame a truncation far from the cause.
  const room = buf.length - c.pos;
  if (kvCount * 13 > room)
    throw inputError(
      `${path}: metadata count ${kvCount} (at offset 16) is impossible for a file of ${buf.length} bytes; ` +
        `the file is corrupt, re-download or re-convert the model`,
    );
  if (tensorCount * 24 + kvCount * 13 > room)
    throw inputError(
      `${path}: tensor count ${tensorCount} (at offset 8) is impossible for a file of ${buf.length} bytes; ` +
        `the file is corrupt, re-download or re-convert the model`,
    );
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.str(`metadata key #${i}`);
    const type = c.u32(`value type of ${key}`);
    metadata.set(key, c.value(type, key));
  }
  const tensors = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.str(`tensor name #${i}`);
    const nDims = c.u32(`dim count of ${name}`);
    if (nDims > 4) throw inputError(`${path}: tensor ${name} has ${nDims} dims (at most 4); the file is corrupt`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64(`dim ${d} of ${name}`));
    const type = c.u32(`type of ${name}`);
    const offset = c.u64(`offset of ${name}`);
    tensors.set(name, { name, dims, type, offset });
  }
  const alignmentValue = metadata.get("general.alignment");
  const alignment = typeof alignmentValue === "number" ? alignmentValue : 32;
  // llama.cpp requires a power of two; 0 would make every offset NaN and let any tensor pass the checks below.
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0 || alignment > 1 << 30)
    throw inputError(`${path}: general.alignment is ${alignment}, not a power of two; the file is corrupt`);
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  // Tensors we can read must lie inside the file and must not overlap (llama.cpp goes further and requires them in
  // order, back to back): overlapping infos would let a small file declare any number of full-size tensors.
  const sized = [...tensors.values()].filter((t) => bytesPerElement(t.type) > 0).sort((a, b) => a.offset - b.offset);
  let prev: GgufTensorInfo | undefined;
  for (const t of sized) {
    const end = dataOffset + t.offset + tensorByteSize(t);
    if (end > limit)
      throw inputError(
        `${path}: GGUF file is truncated: tensor ${t.name} ends at byte ${end} but the file has ${limit} bytes`,
      );
    if (prev && prev.offset + tensorByteSize(prev) > t.offset && tensorByteSize(t) > 0)
      throw inputError(
        `${path}: tensors ${prev.name} and ${t.name} overlap (data offsets ${prev.offset} and ${t.offset}); the file is ` +
          `corrupt, re-download or re-convert the model`,
      );
    if (tensorByteSize(t) > 0) prev = t;
  }
  return { path, version, metadata, tensors, dataOffset, buffer: buf };
}

function bytesPerElement(type: number): number {
  switch (type) {
    case GgmlType.F32: return 4;
    case GgmlType.F16: return 2;
    case GgmlType.BF16: return 2;
    default: return 0; // quantised: size not needed because we refuse to read them
  }
}

export function tensorByteSize(t: GgufTensorInfo): number {
  return t.dims.reduce((a, b) => a * b, 1) * bytesPerElement(t.type);
}

/**
 * The tensor's info if readGgufTensor can read it: present, and F32, F16 or BF16 (readGguf has checked that those
 * lie inside the file). Quantised tensors are refused with a message saying what to do; their dims are never
 * trusted for an allocation, because readGguf cannot check them against the file.
 */
export function readableGgufTensor(f: GgufFile, name: string): GgufTensorInfo {
  const t = f.tensors.get(name);
  if (!t) throw inputError(`${f.path}: tensor ${name} is missing`);
  if (bytesPerElement(t.type) === 0)
    throw unsupportedError(
      `${f.path}: tensor ${name} is ${ggmlTypeName(t.type)}; tsdpo reads F32, F16 and BF16 GGUF tensors, and ` +
        `Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K matrices. Requantise the model to one of those (e.g. ` +
        `llama.cpp's llama-quantize model-f16.gguf out.gguf Q4_K_M), or convert it without quantisation`,
    );
  return t;
}

/** Reads a tensor as float32, converting F16/BF16. */
export function readGgufTensor(f: GgufFile, name: string): Float32Array {
  const t = readableGgufTensor(f, name);
  const n = t.dims.reduce((a, b) => a * b, 1);
  const start = f.dataOffset + t.offset;
  const out = new Float32Array(n);
  if (t.type === GgmlType.F32) for (let i = 0; i < n; i++) out[i] = f.buffer.readFloatLE(start + 4 * i);
  else if (t.type === GgmlType.F16) for (let i = 0; i < n; i++) out[i] = f16ToF32(f.buffer.readUInt16LE(start + 2 * i));
  else for (let i = 0; i < n; i++) out[i] = bf16ToF32(f.buffer.readUInt16LE(start + 2 * i));
  return out;
}

export function metaString(f: GgufFile, key: string): string | undefined {
  const v = f.metadata.get(key);
  return typeof v === "string" ? v : undefined;
}
export function metaNumber(f: GgufFile, key: string): number | undefined {
  const v = f.metadata.get(key);
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  return undefined;
}
export function metaArray(f: GgufFile, key: string): GgufValue[] | undefined {
  const v = f.metadata.get(key);
  return Array.isArray(v) ? v : undefined;
}
