// safetensors reader and writer, single files and Hugging Face sharded folders.
//
// Layout (github.com/huggingface/safetensors, README "Format"): an unsigned 64-bit little-endian N, then N bytes of
// UTF-8 JSON, then the data region. The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
// (byte offsets relative to the start of the data region) plus an optional "__metadata__" string→string map. The
// reference implementation pads the JSON with spaces to a multiple of 8 bytes and refuses files whose tensors
// leave holes in, overlap in, or do not exactly fill the data region; we check the same so that anything we accept
// (or write) is accepted by transformers too.
//
// Reading is in two steps so that a loader can check names and shapes before touching the (possibly large) data:
// readSafetensorsHeader reads only the header, readSafetensorsTensor then reads one tensor with a positioned read.

import {
  closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, unlinkSync,
} from "node:fs";
import { endianness } from "node:os";
import { basename, join } from "node:path";
import { describeJsonError, describeValue, inputError, TsdpoError, unsupportedError } from "../errors.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./dtype.js";
import { fsyncDir, writeFileAtomic } from "./atomic.js";

// Every dtype the format defines, with its size in bytes; we validate byte lengths for all of them but only
// decode the ones a Llama-family checkpoint (or a test fixture) uses.
const DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
} as const;
export type SafetensorsDtype = keyof typeof DTYPE_BYTES;
const READABLE_DTYPES = ["F32", "F16", "BF16", "F64", "I32", "I64"] as const;
export type WriteDtype = "F32" | "F16" | "BF16";

export type TensorArray = Float32Array | Float64Array | Int32Array | BigInt64Array;

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number; // byte offsets relative to the data region, end exclusive
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  fileSize: number;
  dataStart: number; // absolute byte offset of the data region (8 + header length)
  tensors: Map<string, SafetensorsEntry>; // in data order
  metadata: Record<string, string>;
}

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorArray; // F32/F16/BF16 -> Float32Array, F64 -> Float64Array, I32 -> Int32Array, I64 -> BigInt64Array
}

export interface SafetensorsContents {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

// The reference implementation refuses headers over 100 MB; a header that large means a corrupt length field.
const MAX_HEADER_BYTES = 100_000_000;
const LITTLE_ENDIAN_HOST = endianness() === "LE";
const REEXPORT = "re-download or re-export the file";

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function openForRead(path: string): number {
  try {
    return openSync(path, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new TsdpoError("io", `${path}: file not found`);
    throw new TsdpoError("io", `${path}: cannot open (${(err as Error).message})`);
  }
}

function readExactly(fd: number, path: string, into: Uint8Array, position: number, what: string): void {
  let got = 0;
  while (got < into.byteLength) {
    const n = readSync(fd, into, got, into.byteLength - got, position + got);
    if (n === 0)
      throw inputError(
        `${path}: file is truncated: needed ${into.byteLength} bytes for ${what} at byte ${position}, got ${got}; ` +
          `the file may have changed since its header was read; ${REEXPORT}`,
      );
    got += n;
  }
}

/** Reads and validates a safetensors header without reading any tensor data. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openForRead(path);
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8)
      throw inputError(
        `${path}: file is truncated: it has ${fileSize} bytes but a safetensors file starts with an 8-byte header ` +
          `length; ${REEXPORT}`,
      );
    const lenBuf = Buffer.alloc(8);
    readExactly(fd, path, lenBuf, 0, "the header length");
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(fileSize - 8))
      throw inputError(
        `${path}: header length ${headerLen} runs beyond the end of the file (${fileSize} bytes, so at most ` +
          `${fileSize - 8} bytes of header); the file is truncated or not safetensors; ${REEXPORT}`,
      );
    const n = Number(headerLen);
    if (n > MAX_HEADER_BYTES)
      throw inputError(`${path}: header length ${n} exceeds the 100 MB limit of the format; the file is corrupt`);
    const headerBuf = Buffer.alloc(n);
    readExactly(fd, path, headerBuf, 8, "the header");
    return parseHeader(path, headerBuf, fileSize);
  } finally {
    closeSync(fd);
  }
}

function parseHeader(path: string, headerBuf: Buffer, fileSize: number): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBuf));
  } catch (err) {
    throw inputError(`${path}: header is not valid UTF-8 JSON (${(err as Error).message}); ${REEXPORT}`);
  }
  if (!isObject(json)) throw inputError(`${path}: header JSON is not an object; ${REEXPORT}`);
  const dataStart = 8 + headerBuf.length;
  const dataLen = fileSize - dataStart;

  const metadata: Record<string, string> = {};
  const meta = json["__metadata__"];
  if (meta !== undefined && meta !== null) {
    if (!isObject(meta)) throw inputError(`${path}: header key __metadata__ must be an object of strings; ${REEXPORT}`);
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== "string")
        throw inputError(`${path}: __metadata__ key ${JSON.stringify(k)} must be a string, got ${describeValue(v)}`);
      metadata[k] = v;
    }
  }

  const entries: SafetensorsEntry[] = [];
  for (const [name, info] of Object.entries(json)) {
    if (name === "__metadata__") continue;
    const where = `${path}: tensor ${JSON.stringify(name)}`;
    if (!isObject(info)) throw inputError(`${where}: header entry is not an object; ${REEXPORT}`);
    const dtype = info["dtype"];
    if (typeof dtype !== "string") throw inputError(`${where}: "dtype" is missing or not a string; ${REEXPORT}`);
    if (!(dtype in DTYPE_BYTES))
      throw unsupportedError(
        `${where} has dtype ${JSON.stringify(dtype)}, which is not a safetensors dtype tsdpo knows ` +
          `(${Object.keys(DTYPE_BYTES).join(", ")}); convert the checkpoint to F32, F16 or BF16`,
      );
    const shape = info["shape"];
    if (!Array.isArray(shape) || !shape.every(isCount))
      throw inputError(`${where}: "shape" must be a list of non-negative integers, got ${describeValue(shape)}`);
    const offs = info["data_offsets"];
    if (!Array.isArray(offs) || offs.length !== 2 || !isCount(offs[0]) || !isCount(offs[1]) || offs[1] < offs[0])
      throw inputError(
        `${where}: "data_offsets" must be [begin, end] with 0 <= begin <= end, got ${describeValue(offs)}; ${REEXPORT}`,
      );
    const [begin, end] = offs as [number, number];
    const dt = dtype as SafetensorsDtype;
    const want = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dt];
    if (end - begin !== want)
      throw inputError(
        `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape.join(", ")}] of ` +
          `${dt} needs ${want}; ${REEXPORT}`,
      );
    if (end > dataLen)
      throw inputError(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data region (${dataLen} bytes); the ` +
          `file is truncated; ${REEXPORT}`,
      );
    entries.push({ name, dtype: dt, shape: shape as number[], begin, end });
  }

  // The tensors must tile the data region exactly: sorted by offset, each starts where the previous one ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: SafetensorsEntry | undefined;
  for (const e of entries) {
    if (e.begin < pos)
      throw inputError(
        `${path}: tensor ${JSON.stringify(e.name)} (bytes ${e.begin}..${e.end}) overlaps tensor ` +
          `${JSON.stringify(prev!.name)} (bytes ${prev!.begin}..${prev!.end}); ${REEXPORT}`,
      );
    if (e.begin > pos)
      throw inputError(
        `${path}: bytes ${pos}..${e.begin} of the data region belong to no tensor (before tensor ` +
          `${JSON.stringify(e.name)}); ${REEXPORT}`,
      );
    pos = e.end;
    prev = e;
  }
  if (pos !== dataLen)
    throw inputError(
      `${path}: the data region has ${dataLen} bytes but the tensors cover only ${pos}` +
        (prev ? ` (the last one, ${JSON.stringify(prev.name)}, ends at ${pos})` : "") +
        `; the file has trailing bytes or a wrong header; ${REEXPORT}`,
    );

  const tensors = new Map<string, SafetensorsEntry>();
  for (const e of entries) tensors.set(e.name, e);
  return { path, fileSize, dataStart, tensors, metadata };
}

function entryOf(h: SafetensorsHeader, name: string): SafetensorsEntry {
  const e = h.tensors.get(name);
  if (!e) throw inputError(`${h.path}: has no tensor ${JSON.stringify(name)}`);
  return e;
}

/** Reads one tensor's data, decoding F16/BF16 to float32. */
export function readSafetensorsTensor(h: SafetensorsHeader, name: string): SafetensorsTensor {
  const e = entryOf(h, name);
  if (!(READABLE_DTYPES as readonly string[]).includes(e.dtype))
    throw unsupportedError(
      `${h.path}: tensor ${JSON.stringify(name)} is ${e.dtype}; tsdpo reads ${READABLE_DTYPES.join(", ")} ` +
        `safetensors tensors; convert the checkpoint to F32, F16 or BF16`,
    );
  if (!LITTLE_ENDIAN_HOST) throw unsupportedError("tsdpo reads safetensors only on little-endian machines");
  const fd = openForRead(h.path);
  try {
    const n = e.shape.reduce((a, b) => a * b, 1);
    const at = h.dataStart + e.begin;
    const what = `tensor ${JSON.stringify(name)}`;
    const read = <T extends ArrayBufferView>(out: T): T => {
      readExactly(fd, h.path, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), at, what);
      return out;
    };
    let data: TensorArray;
    switch (e.dtype) {
      case "F32": data = read(new Float32Array(n)); break;
      case "F64": data = read(new Float64Array(n)); break;
      case "I32": data = read(new Int32Array(n)); break;
      case "I64": data = read(new BigInt64Array(n)); break;
      case "F16":
      case "BF16": {
        const bits = read(new Uint16Array(n));
        const conv = e.dtype === "F16" ? f16ToF32 : bf16ToF32;
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = conv(bits[i]!);
        data = out;
        break;
      }
      default:
        throw new Error(`unreachable: dtype ${e.dtype}`);
    }
    return { dtype: e.dtype, shape: [...e.shape], data };
  } finally {
    closeSync(fd);
  }
}

/** Reads a floating-point tensor as float32 (F64 is narrowed); integer tensors are refused. */
export function readSafetensorsTensorF32(h: SafetensorsHeader, name: string): Float32Array {
  const e = entryOf(h, name);
  if (e.dtype !== "F32" && e.dtype !== "F16" && e.dtype !== "BF16" && e.dtype !== "F64")
    throw inputError(`${h.path}: tensor ${JSON.stringify(name)} is ${e.dtype}, expected a floating-point weight`);
  const t = readSafetensorsTensor(h, name);
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array);
}

/** Reads a whole safetensors file. */
export function readSafetensors(path: string): SafetensorsContents {
  const h = readSafetensorsHeader(path);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const name of h.tensors.keys()) tensors.set(name, readSafetensorsTensor(h, name));
  return { tensors, metadata: h.metadata };
}

// ---------------------------------------------------------------------------------------------------------------
// Hugging Face folders: model.safetensors, or model.safetensors.index.json + model-0000i-of-0000N.safetensors.

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";
const SHARD_RE = /^model-\d{5}-of-\d{5}\.safetensors$/;
export const shardFileName = (i: number, n: number): string =>
  `model-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`;

export interface SafetensorsFolder {
  folder: string;
  files: SafetensorsHeader[]; // one per shard, in index order (or the single file)
  tensors: Map<string, { file: SafetensorsHeader; entry: SafetensorsEntry }>; // where each tensor lives
  entries: Map<string, SafetensorsEntry>; // the same, name -> dtype/shape/offsets, for shape checks
  metadata: Record<string, string>; // __metadata__ of the first file (transformers writes {"format": "pt"})
  indexMetadata: Record<string, unknown> | null; // the index's "metadata" object (total_size), null for one file
}

/**
 * Opens a model folder and reads every header, without tensor data. Like transformers, a single model.safetensors
 * wins over an index when both exist.
 */
export function openSafetensorsFolder(folder: string): SafetensorsFolder {
  const single = join(folder, SINGLE_FILE);
  const indexPath = join(folder, INDEX_FILE);
  if (existsSync(single)) {
    const h = readSafetensorsHeader(single);
    const tensors = new Map<string, { file: SafetensorsHeader; entry: SafetensorsEntry }>();
    for (const e of h.tensors.values()) tensors.set(e.name, { file: h, entry: e });
    return { folder, files: [h], tensors, entries: new Map(h.tensors), metadata: h.metadata, indexMetadata: null };
  }
  if (!existsSync(indexPath)) {
    const bin = existsSync(join(folder, "pytorch_model.bin")) || existsSync(join(folder, "pytorch_model.bin.index.json"));
    if (bin)
      throw unsupportedError(
        `${folder}: has PyTorch .bin weights but no ${SINGLE_FILE}; tsdpo reads safetensors only. Convert with ` +
          `transformers: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`,
      );
    throw new TsdpoError("io", `${folder}: neither ${SINGLE_FILE} nor ${INDEX_FILE} exists; is this a model folder?`);
  }

  let index: unknown;
  let indexText = "";
  try {
    indexText = readFileSync(indexPath, "utf8");
    index = JSON.parse(indexText);
  } catch (err) {
    throw inputError(`${indexPath}: not valid JSON (${describeJsonError(indexText, err)}); re-download the model folder`);
  }
  if (!isObject(index) || !isObject(index["weight_map"]))
    throw inputError(`${indexPath}: key "weight_map" is missing or not an object of tensor name -> shard file`);
  const indexMetadata = isObject(index["metadata"]) ? index["metadata"] : {};
  const weightMap = index["weight_map"];

  const shardNames = new Set<string>(); // in first-mention order; a Set, as a corrupt index may name many files
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== "string" || file === "" || file !== basename(file) || file === "." || file === "..")
      throw inputError(
        `${indexPath}: weight_map maps tensor ${JSON.stringify(name)} to ${describeValue(file)}, which is not a ` +
          `file name in this folder`,
      );
    shardNames.add(file);
  }
  if (shardNames.size === 0) throw inputError(`${indexPath}: weight_map is empty`);

  const files: SafetensorsHeader[] = [];
  const byName = new Map<string, SafetensorsHeader>();
  for (const file of shardNames) {
    const p = join(folder, file);
    if (!existsSync(p)) {
      const example = Object.keys(weightMap).find((k) => weightMap[k] === file)!;
      throw inputError(
        `${indexPath}: shard ${file} (holding tensor ${JSON.stringify(example)} and others) is missing from ` +
          `${folder}; download all shards`,
      );
    }
    const h = readSafetensorsHeader(p);
    files.push(h);
    byName.set(file, h);
  }

  const tensors = new Map<string, { file: SafetensorsHeader; entry: SafetensorsEntry }>();
  for (const [name, file] of Object.entries(weightMap)) {
    const h = byName.get(file as string)!;
    const entry = h.tensors.get(name);
    if (!entry)
      throw inputError(
        `${indexPath}: weight_map puts tensor ${JSON.stringify(name)} in ${file}, but ${file} has no such ` +
          `tensor; the index and shards come from different saves, re-download the model folder`,
      );
    tensors.set(name, { file: h, entry });
  }
  // Tensors a shard holds but the index does not list are still real data: keep them, unless two shards disagree.
  for (const h of files)
    for (const entry of h.tensors.values()) {
      const seen = tensors.get(entry.name);
      if (!seen) tensors.set(entry.name, { file: h, entry });
      else if (seen.file !== h)
        throw inputError(
          `${folder}: tensor ${JSON.stringify(entry.name)} is in both ${basename(seen.file.path)} and ` +
            `${basename(h.path)}; the index says ${String(weightMap[entry.name] ?? "neither")}. Re-download the folder`,
        );
    }
  const entries = new Map([...tensors].map(([name, t]) => [name, t.entry]));
  return { folder, files, tensors, entries, metadata: files[0]!.metadata, indexMetadata };
}

export function readFolderTensor(f: SafetensorsFolder, name: string): SafetensorsTensor {
  const t = f.tensors.get(name);
  if (!t) throw inputError(`${f.folder}: the model has no tensor ${JSON.stringify(name)}`);
  return readSafetensorsTensor(t.file, name);
}

export function readFolderTensorF32(f: SafetensorsFolder, name: string): Float32Array {
  const t = f.tensors.get(name);
  if (!t) throw inputError(`${f.folder}: the model has no tensor ${JSON.stringify(name)}`);
  return readSafetensorsTensorF32(t.file, name);
}

/** Reads every tensor of a model folder (single file or sharded). */
export function readSafetensorsFolder(folder: string): SafetensorsContents {
  const f = openSafetensorsFolder(folder);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const name of f.tensors.keys()) tensors.set(name, readFolderTensor(f, name));
  return { tensors, metadata: f.metadata };
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

export interface TensorToWrite {
  name: string;
  shape: readonly number[];
  data: Float32Array;
}

export interface WriteOptions {
  dtype?: WriteDtype; // default F32
  metadata?: Record<string, string>;
}

export interface ShardedWriteOptions extends WriteOptions {
  maxShardBytes: number;
}

const WRITE_BYTES: Record<WriteDtype, number> = { F32: 4, F16: 2, BF16: 2 };

function checkTensors(tensors: readonly TensorToWrite[], dest: string): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === "" || t.name === "__metadata__")
      throw new Error(`${dest}: invalid tensor name ${JSON.stringify(t.name)}`);
    if (seen.has(t.name)) throw new Error(`${dest}: tensor ${t.name} is listed twice`);
    seen.add(t.name);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!t.shape.every(isCount) || n !== t.data.length)
      throw new Error(`${dest}: tensor ${t.name} has shape [${t.shape.join(", ")}] but ${t.data.length} values`);
  }
}

function encodeData(data: Float32Array, dtype: WriteDtype): Uint8Array {
  if (!LITTLE_ENDIAN_HOST) throw unsupportedError("tsdpo writes safetensors only on little-endian machines");
  if (dtype === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bits = new Uint16Array(data.length);
  const conv = dtype === "F16" ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < data.length; i++) bits[i] = conv(data[i]!);
  return new Uint8Array(bits.buffer);
}

/**
 * The bytes of a safetensors file as chunks (8-byte length + padded header, then one chunk per tensor), in the
 * order given. transformers requires __metadata__.format to be "pt" (or tf/flax/mlx) to load a file, so "pt" is
 * the default.
 */
export function encodeSafetensors(tensors: readonly TensorToWrite[], opts: WriteOptions = {}): Uint8Array[] {
  const dtype = opts.dtype ?? "F32";
  if (!(dtype in WRITE_BYTES)) throw new Error(`safetensors writer: dtype ${String(dtype)} is not F32, F16 or BF16`);
  const metadata = { format: "pt", ...opts.metadata };
  for (const [k, v] of Object.entries(metadata))
    if (typeof v !== "string") throw new Error(`safetensors writer: metadata ${k} must be a string`);
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data.length * WRITE_BYTES[dtype];
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8 + json.length);
  prefix.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(prefix, 8);
  return [prefix, ...tensors.map((t) => encodeData(t.data, dtype))];
}

/** Writes one safetensors file atomically. */
export function writeSafetensors(path: string, tensors: readonly TensorToWrite[], opts: WriteOptions = {}): void {
  checkTensors(tensors, path);
  writeFileAtomic(path, encodeSafetensors(tensors, opts));
}

/**
 * Writes a model folder the way transformers' save_pretrained does: a single model.safetensors when everything fits
 * in maxShardBytes, else model-0000i-of-0000N.safetensors shards plus model.safetensors.index.json. Shards are cut
 * with huggingface_hub's greedy rule: tensors in order, a new shard when the next tensor would overflow the current
 * one, and a tensor larger than the limit alone in a shard of its own. Weight files from an earlier save that the
 * new one does not use are deleted afterwards, so the folder never mixes two saves. Returns the files written.
 */
export function writeSafetensorsSharded(
  folder: string,
  tensors: readonly TensorToWrite[],
  opts: ShardedWriteOptions,
): string[] {
  checkTensors(tensors, folder);
  const dtype = opts.dtype ?? "F32";
  if (!(Number.isSafeInteger(opts.maxShardBytes) && opts.maxShardBytes > 0))
    throw new Error(`${folder}: maxShardBytes must be a positive integer, got ${opts.maxShardBytes}`);
  const size = (t: TensorToWrite): number => t.data.length * WRITE_BYTES[dtype];
  mkdirSync(folder, { recursive: true });

  const shards: TensorToWrite[][] = [];
  let current: TensorToWrite[] = [];
  let currentBytes = 0;
  let totalBytes = 0;
  let totalParams = 0;
  for (const t of tensors) {
    const b = size(t);
    totalBytes += b;
    totalParams += t.data.length;
    if (b > opts.maxShardBytes) {
      shards.push([t]);
      continue;
    }
    if (currentBytes + b > opts.maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += b;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);

  const written: string[] = [];
  const fileOpts: WriteOptions = { dtype, metadata: opts.metadata ?? {} };
  if (shards.length === 1) {
    writeSafetensors(join(folder, SINGLE_FILE), shards[0]!, fileOpts);
    written.push(SINGLE_FILE);
  } else {
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const file = shardFileName(i, shards.length);
      writeSafetensors(join(folder, file), shard, fileOpts);
      written.push(file);
      for (const t of shard) weightMap[t.name] = file;
    });
    // transformers writes the index with json.dumps(indent=2, sort_keys=True) + "\n"; do the same.
    const sortedMap: Record<string, string> = {};
    for (const k of Object.keys(weightMap).sort()) sortedMap[k] = weightMap[k]!;
    const index = { metadata: { total_parameters: totalParams, total_size: totalBytes }, weight_map: sortedMap };
    writeFileAtomic(join(folder, INDEX_FILE), JSON.stringify(index, null, 2) + "\n");
    written.push(INDEX_FILE);
  }

  let removed = false;
  for (const f of readdirSync(folder))
    if ((f === SINGLE_FILE || f === INDEX_FILE || SHARD_RE.test(f)) && !written.includes(f)) {
      unlinkSync(join(folder, f));
      removed = true;
    }
  if (removed) fsyncDir(folder);
  return written;
}
