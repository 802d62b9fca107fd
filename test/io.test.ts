// io/: safetensors read/write (single and sharded), config.json and GGUF metadata parsing, tensor names and the
// GGUF Q/K row permutation. Independent references: hand-built safetensors bytes, the PyTorch fixtures (written by
// tools/torch_fixtures.py, not by our writer), torch's float16/bfloat16 rounding table, hand-derived shard splits,
// and llama.cpp's logits for stories260K (which pin the GGUF layout: no transpose, interleaved Q/K rows).

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError, type ErrorKind } from "../src/errors.js";
import { f16ToF32, bf16ToF32 } from "../src/io/dtype.js";
import { writeFileAtomic } from "../src/io/atomic.js";
import {
  openSafetensorsFolder,
  readSafetensors,
  readSafetensorsFolder,
  readSafetensorsHeader,
  readSafetensorsTensor,
  readSafetensorsTensorF32,
  writeSafetensors,
  writeSafetensorsSharded,
  type TensorToWrite,
} from "../src/io/safetensors.js";
import { hfConfigFromLlama, llamaConfigFromHf, readHfConfig } from "../src/io/hfconfig.js";
import { llamaConfigFromGguf } from "../src/io/ggufconfig.js";
import {
  ggufQkPermuted,
  ggufShape,
  ggufTensorName,
  ggufToHfQkRows,
  hfTensorName,
  hfToGgufQkRows,
  isIgnorableHfTensor,
  tsdpoNameFromGguf,
  tsdpoNameFromHf,
} from "../src/io/names.js";
import { type GgufFile, type GgufValue, readGguf, readGgufTensor } from "../src/io/gguf.js";
import { type LlamaConfig, paramSpecs } from "../src/model/config.js";
import { assertAllClose, fixture, maxAbsDiff, rng, storiesGguf } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-io-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let tmpCount = 0;
const tmpPath = (name: string): string => join(tmp, `${tmpCount++}-${name}`);

function throwsTsdpo(fn: () => unknown, kind: ErrorKind, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TsdpoError, `expected a TsdpoError, got ${String(err)}`);
    assert.equal(err.kind, kind, `kind of: ${err.message}`);
    for (const f of fragments) assert.ok(err.message.includes(f), `message lacks ${JSON.stringify(f)}: ${err.message}`);
    return true;
  });
}

/** A safetensors file from a header string and data bytes, exactly as the format defines it (no padding). */
function rawSafetensors(path: string, header: string, data: Uint8Array | number[]): string {
  const h = Buffer.from(header, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, h, Buffer.from(data)]));
  return path;
}

function headerJson(path: string): { len: number; text: string } {
  const b = readFileSync(path);
  const len = Number(b.readBigUInt64LE(0));
  return { len, text: b.toString("utf8", 8, 8 + len) };
}

/** The raw 16-bit words of a written F16/BF16 tensor. */
function rawU16(path: string, name: string): number[] {
  const h = readSafetensorsHeader(path);
  const e = h.tensors.get(name)!;
  const b = readFileSync(path);
  const out: number[] = [];
  for (let p = h.dataStart + e.begin; p < h.dataStart + e.end; p += 2) out.push(b.readUInt16LE(p));
  return out;
}

const f32 = (...xs: number[]): Float32Array => Float32Array.from(xs);
const bitsToF32 = (bits: number): number => new Float32Array(Uint32Array.of(bits).buffer)[0]!;

describe("safetensors reader on hand-built bytes", () => {
  test("decodes every supported dtype, scalars, empty tensors and metadata at unaligned offsets", () => {
    const header = JSON.stringify({
      __metadata__: { format: "pt", note: "hand" },
      f32: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      f16: { dtype: "F16", shape: [2, 2], data_offsets: [8, 16] },
      bf16: { dtype: "BF16", shape: [3], data_offsets: [16, 22] },
      i32: { dtype: "I32", shape: [], data_offsets: [22, 26] },
      i64: { dtype: "I64", shape: [2], data_offsets: [26, 42] },
      f64: { dtype: "F64", shape: [1], data_offsets: [42, 50] },
      empty: { dtype: "F32", shape: [0, 3], data_offsets: [50, 50] },
    });
    const d = Buffer.alloc(50);
    d.writeUInt32LE(0x3fc00000, 0); // 1.5
    d.writeUInt32LE(0xbe800000, 4); // -0.25
    [0x3c00, 0xc000, 0x7bff, 0x0001].forEach((h, i) => d.writeUInt16LE(h, 8 + 2 * i)); // 1, -2, 65504, 2^-24
    [0x3f80, 0x4049, 0xc2f7].forEach((h, i) => d.writeUInt16LE(h, 16 + 2 * i)); // 1, 3.140625, -123.5
    d.writeInt32LE(-7, 22);
    d.writeBigInt64LE(2n ** 40n + 3n, 26);
    d.writeBigInt64LE(-1n, 34);
    d.writeDoubleLE(0.1, 42);
    const path = rawSafetensors(tmpPath("hand.safetensors"), header, d);

    const h = readSafetensorsHeader(path);
    assert.deepEqual([...h.tensors.keys()], ["f32", "f16", "bf16", "i32", "i64", "f64", "empty"]);
    assert.deepEqual(h.tensors.get("f16")!.shape, [2, 2]);
    const { tensors, metadata } = readSafetensors(path);
    assert.deepEqual(metadata, { format: "pt", note: "hand" });
    assert.deepEqual(tensors.get("f32")!.data, f32(1.5, -0.25));
    assert.deepEqual(tensors.get("f16")!.data, f32(1, -2, 65504, 2 ** -24));
    assert.deepEqual(tensors.get("bf16")!.data, f32(1, 3.140625, -123.5));
    assert.deepEqual(tensors.get("i32"), { dtype: "I32", shape: [], data: Int32Array.of(-7) });
    assert.deepEqual(tensors.get("i64")!.data, BigInt64Array.of(2n ** 40n + 3n, -1n));
    assert.deepEqual(tensors.get("f64")!.data, Float64Array.of(0.1));
    assert.deepEqual(tensors.get("empty"), { dtype: "F32", shape: [0, 3], data: new Float32Array(0) });
    assert.deepEqual(readSafetensorsTensorF32(h, "f64"), f32(0.1));
    throwsTsdpo(() => readSafetensorsTensorF32(h, "i32"), "input", path, '"i32"', "I32");
    throwsTsdpo(() => readSafetensorsTensor(h, "nope"), "input", path, '"nope"');
  });

  test("reads the PyTorch fixtures written by tools/torch_fixtures.py (independent writer)", () => {
    const path = fixture("torch", "llama.safetensors");
    const h = readSafetensorsHeader(path);
    assert.equal(h.metadata["format"], "tsdpo-torch-fixture");
    // Documented init: parameter k has 0.3 * sin(0.37 i + 1.3 k) (matrices) or 1 + 0.1 * sin(...) (norms).
    const embd = readSafetensorsTensor(h, "model.embed_tokens.weight");
    assert.deepEqual(embd.shape, [61, 48]);
    const want0 = Float64Array.from({ length: 61 * 48 }, (_, i) => 0.3 * Math.sin(0.37 * i));
    assertAllClose(embd.data as Float32Array, want0, 1e-7, 1e-7, "embed_tokens");
    const norm = readSafetensorsTensorF32(h, "model.layers.0.input_layernorm.weight");
    const want1 = Float64Array.from({ length: 48 }, (_, i) => 1 + 0.1 * Math.sin(0.37 * i + 1.3));
    assertAllClose(norm, want1, 1e-7, 1e-7, "input_layernorm");
  });
});

describe("safetensors writer", () => {
  test("F32 round-trips bit for bit; header is space-padded to 8 bytes and carries format=pt", () => {
    const r = rng(1);
    const big = Float32Array.from({ length: 3 * 5 }, () => (r() - 0.5) * 1e4);
    big[0] = -0;
    big[1] = 1e-45; // smallest subnormal
    big[2] = 3.4e38;
    const tensors: TensorToWrite[] = [
      { name: "model.a", shape: [3, 5], data: big },
      { name: "b", shape: [1], data: f32(7) },
      { name: "c", shape: [], data: f32(-1.25) },
    ];
    const path = tmpPath("rt.safetensors");
    writeSafetensors(path, tensors, { metadata: { step: "12" } });
    const { len, text } = headerJson(path);
    assert.equal(len % 8, 0);
    assert.match(text, /^\{.*\} *$/);
    const hj = JSON.parse(text);
    assert.deepEqual(hj.__metadata__, { format: "pt", step: "12" });
    assert.deepEqual(hj["model.a"], { dtype: "F32", shape: [3, 5], data_offsets: [0, 60] });
    assert.deepEqual(hj["b"].data_offsets, [60, 64]);
    const back = readSafetensors(path);
    for (const t of tensors) {
      const got = back.tensors.get(t.name)!;
      assert.equal(got.dtype, "F32");
      assert.deepEqual(got.shape, [...t.shape]);
      assert.deepEqual(new Uint32Array((got.data as Float32Array).buffer), new Uint32Array(t.data.slice().buffer));
    }
    assert.equal(readFileSync(path).length, 8 + len + 68);
    assert.deepEqual(readdirSync(tmp).filter((f) => f.includes(".tmp-")), [], "no temporary files left behind");
  });

  for (const [dtype, decode] of [["F16", f16ToF32], ["BF16", bf16ToF32]] as const) {
    test(`${dtype}: every exactly representable value round-trips, with identical bits`, () => {
      const r = rng(dtype === "F16" ? 2 : 3);
      const bits: number[] = [0x0000, 0x8000, 0x0001, 0x3c00, 0x7c00, 0xfc00];
      while (bits.length < 500) {
        const b = Math.floor(r() * 65536);
        const isNan = dtype === "F16" ? (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0 : (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
        if (!isNan) bits.push(b);
      }
      const values = Float32Array.from(bits, decode);
      const path = tmpPath(`${dtype}.safetensors`);
      writeSafetensors(path, [{ name: "w", shape: [bits.length], data: values }], { dtype });
      assert.deepEqual(rawU16(path, "w"), bits);
      const back = readSafetensors(path).tensors.get("w")!;
      assert.equal(back.dtype, dtype);
      assert.deepEqual(back.data, values);
    });
  }

  test("F16/BF16 round to nearest even: hand-computed bit patterns", () => {
    const cases: [string, number, number][] = [
      // [dtype, float32 value, expected bits]
      ["F16", 1 + 2 ** -11, 0x3c00], // halfway between 1 and 1+2^-10: tie to the even mantissa 0
      ["F16", 1 + 3 * 2 ** -11, 0x3c02], // halfway between mantissas 1 and 2: tie to 2
      ["F16", 1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway: up
      ["F16", 65519, 0x7bff], // below the midpoint to 65536: largest finite half
      ["F16", 65520, 0x7c00], // midpoint between 65504 and 2^16 rounds to even = overflow to +inf
      ["F16", 2 ** -25, 0x0000], // half the smallest subnormal: tie to 0
      ["F16", 1.5 * 2 ** -25, 0x0001],
      ["F16", 3 * 2 ** -25, 0x0002], // 1.5 subnormal steps: tie to even 2
      ["BF16", 1 + 2 ** -8, 0x3f80], // halfway between 1 and 1+2^-7: tie to even
      ["BF16", 1 + 3 * 2 ** -8, 0x3f82],
      ["BF16", 1 + 2 ** -8 + 2 ** -20, 0x3f81],
      ["BF16", -3.14159265, 0xc049], // -3.140625 (0xc049) is nearer than -3.15625 (0xc04a)
    ];
    for (const [dtype, x, want] of cases) {
      const path = tmpPath("round.safetensors");
      writeSafetensors(path, [{ name: "x", shape: [1], data: f32(x) }], { dtype: dtype as "F16" | "BF16" });
      assert.equal(rawU16(path, "x")[0], want, `${dtype}(${x})`);
    }
  });

  test("F16/BF16 bits match PyTorch's Tensor.to() on 228 values (test/fixtures/io/half-rounding.json)", () => {
    const rows = JSON.parse(readFileSync(fixture("io", "half-rounding.json"), "utf8")).rows as number[][];
    const values = Float32Array.from(rows, (row) => bitsToF32(row[0]!));
    const path = tmpPath("torch-half.safetensors");
    writeSafetensors(path, [{ name: "x", shape: [values.length], data: values }], { dtype: "F16" });
    assert.deepEqual(rawU16(path, "x"), rows.map((row) => row[1]));
    writeSafetensors(path, [{ name: "x", shape: [values.length], data: values }], { dtype: "BF16" });
    assert.deepEqual(rawU16(path, "x"), rows.map((row) => row[2]));
  });

  test("refuses tensors whose data does not match their shape", () => {
    assert.throws(
      () => writeSafetensors(tmpPath("bad.safetensors"), [{ name: "w", shape: [2, 3], data: new Float32Array(5) }]),
      /tensor w has shape \[2, 3\] but 5 values/,
    );
  });

  test("writeFileAtomic replaces a file whole and accepts chunk lists", () => {
    const path = tmpPath("atomic.txt");
    writeFileAtomic(path, "old contents that are longer");
    writeFileAtomic(path, [Buffer.from("ab"), new Uint8Array([99, 100])]);
    assert.equal(readFileSync(path, "utf8"), "abcd");
    throwsTsdpo(() => writeFileAtomic(join(tmp, "no-such-dir", "x"), "x"), "io", "no-such-dir");
  });
});

describe("sharded safetensors folders", () => {
  const mk = (name: string, n: number, seed: number): TensorToWrite => ({
    name,
    shape: [n],
    data: Float32Array.from({ length: n }, (_, i) => seed + i / 8),
  });
  // F32 sizes: a 64 B, b 40 B, c 36 B, d 160 B (over the 100 B limit), e 8 B.
  const tensors = [mk("a", 16, 1), mk("b", 10, 2), mk("c", 9, 3), mk("d", 40, 4), mk("e", 2, 5)];

  test("splits like huggingface_hub and writes transformers' index byte for byte", () => {
    const folder = tmpPath("sharded");
    const written = writeSafetensorsSharded(folder, tensors, { maxShardBytes: 100, dtype: "F32" });
    // a fits; b would overflow -> new shard; c joins b; d is over the limit -> a shard of its own, appended
    // before the open one; e joins b, c.
    const s = (i: number): string => `model-0000${i}-of-00003.safetensors`;
    assert.deepEqual(written, [s(1), s(2), s(3), "model.safetensors.index.json"]);
    assert.deepEqual([...readSafetensorsHeader(join(folder, s(1))).tensors.keys()], ["a"]);
    assert.deepEqual([...readSafetensorsHeader(join(folder, s(2))).tensors.keys()], ["d"]);
    assert.deepEqual([...readSafetensorsHeader(join(folder, s(3))).tensors.keys()], ["b", "c", "e"]);
    const index = readFileSync(join(folder, "model.safetensors.index.json"), "utf8");
    const expected =
      "{\n" +
      '  "metadata": {\n    "total_parameters": 77,\n    "total_size": 308\n  },\n' +
      '  "weight_map": {\n' +
      `    "a": "${s(1)}",\n    "b": "${s(3)}",\n    "c": "${s(3)}",\n    "d": "${s(2)}",\n    "e": "${s(3)}"\n` +
      "  }\n}\n";
    assert.equal(index, expected);

    const back = readSafetensorsFolder(folder);
    assert.deepEqual([...back.tensors.keys()].sort(), ["a", "b", "c", "d", "e"]);
    for (const t of tensors) assert.deepEqual(back.tensors.get(t.name)!.data, t.data);
    const f = openSafetensorsFolder(folder);
    assert.equal(f.files.length, 3);
    assert.deepEqual(f.indexMetadata, { total_parameters: 77, total_size: 308 });
    assert.deepEqual(f.entries.get("d")!.shape, [40]);
    assert.deepEqual(f.metadata, { format: "pt" });
  });

  test("BF16 halves the sizes: everything fits in two shards", () => {
    const folder = tmpPath("sharded-bf16");
    // bf16 sizes 32, 20, 18, 80, 4 with limit 100: [a,b,c] = 70, d would make 150 -> new shard [d, e] = 84.
    const written = writeSafetensorsSharded(folder, tensors, { maxShardBytes: 100, dtype: "BF16" });
    assert.deepEqual(written, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]);
    const f = openSafetensorsFolder(folder);
    assert.deepEqual(f.indexMetadata, { total_parameters: 77, total_size: 154 });
    const back = readSafetensorsFolder(folder);
    for (const t of tensors) assert.deepEqual(back.tensors.get(t.name)!.data, t.data); // multiples of 1/8: exact
  });

  test("one model.safetensors when it fits; a new save removes the old save's weight files only", () => {
    const folder = tmpPath("resave");
    writeSafetensorsSharded(folder, tensors, { maxShardBytes: 100 });
    writeFileSync(join(folder, "config.json"), "{}");
    writeFileSync(join(folder, "model-notes.txt"), "keep");
    assert.deepEqual(writeSafetensorsSharded(folder, tensors, { maxShardBytes: 10_000 }), ["model.safetensors"]);
    assert.deepEqual(readdirSync(folder).sort(), ["config.json", "model-notes.txt", "model.safetensors"]);
    writeSafetensorsSharded(folder, tensors, { maxShardBytes: 150 });
    assert.deepEqual(readdirSync(folder).sort(), [
      "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model-notes.txt",
      "model.safetensors.index.json",
    ]);
  });
});

describe("safetensors corruption gives a precise error", () => {
  const okHeader = (extra = {}): string =>
    JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, ...extra });

  test("file shorter than the 8-byte length", () => {
    const p = tmpPath("tiny.safetensors");
    writeFileSync(p, Buffer.from([1, 2, 3, 4, 5]));
    throwsTsdpo(() => readSafetensorsHeader(p), "input", p, "file is truncated: it has 5 bytes");
  });

  test("header length beyond the end of the file", () => {
    const p = tmpPath("longhdr.safetensors");
    const b = Buffer.alloc(28);
    b.writeBigUInt64LE(1000n);
    writeFileSync(p, b);
    throwsTsdpo(() => readSafetensorsHeader(p), "input", p, "header length 1000 runs beyond the end of the file (28 bytes");
  });

  test("header that is not JSON, or not an object", () => {
    const p = rawSafetensors(tmpPath("badjson.safetensors"), "{not json}", []);
    throwsTsdpo(() => readSafetensorsHeader(p), "input", p, "header is not valid UTF-8 JSON");
    const q = rawSafetensors(tmpPath("array.safetensors"), "[1, 2]", []);
    throwsTsdpo(() => readSafetensorsHeader(q), "input", q, "header JSON is not an object");
  });

  test("truncated data: offsets beyond the data region", () => {
    const p = tmpPath("trunc.safetensors");
    writeSafetensors(p, [{ name: "first", shape: [4], data: new Float32Array(4) }, { name: "last", shape: [3], data: new Float32Array(3) }]);
    truncateSync(p, readFileSync(p).length - 4);
    throwsTsdpo(() => readSafetensors(p), "input", p, 'tensor "last"', "data_offsets [16, 28] run past the end of the data region (24 bytes)");
  });

  test("malformed data_offsets and shapes", () => {
    const p = rawSafetensors(tmpPath("offs.safetensors"), JSON.stringify({ w: { dtype: "F32", shape: [1], data_offsets: [8, 4] } }), new Array(8).fill(0));
    throwsTsdpo(() => readSafetensorsHeader(p), "input", p, 'tensor "w"', '"data_offsets" must be [begin, end]');
    const q = rawSafetensors(tmpPath("shape.safetensors"), JSON.stringify({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }), [0, 0, 0, 0]);
    throwsTsdpo(() => readSafetensorsHeader(q), "input", q, 'tensor "w"', '"shape" must be a list of non-negative integers');
  });

  test("byte length that does not match shape x dtype size", () => {
    const p = rawSafetensors(tmpPath("count.safetensors"), JSON.stringify({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), new Array(8).fill(0));
    throwsTsdpo(() => readSafetensorsHeader(p), "input", p, 'tensor "w"', "data_offsets [0, 8] span 8 bytes but shape [3] of F32 needs 12");
  });

  test("unknown dtype is unsupported; a known dtype tsdpo does not decode is refused on read", () => {
    const p = rawSafetensors(tmpPath("q4.safetensors"), JSON.stringify({ w: { dtype: "Q4", shape: [2], data_offsets: [0, 1] } }), [0]);
    throwsTsdpo(() => readSafetensorsHeader(p), "unsupported", p, 'tensor "w"', '"Q4"');
    const q = rawSafetensors(tmpPath("u8.safetensors"), JSON.stringify({ m: { dtype: "U8", shape: [2], data_offsets: [0, 2] } }), [0, 1]);
    const h = readSafetensorsHeader(q);
    throwsTsdpo(() => readSafetensorsTensor(h, "m"), "unsupported", q, 'tensor "m" is U8');
  });

  test("overlapping tensors, holes and trailing bytes", () => {
    const data = new Array(12).fill(0);
    const overlap = JSON.stringify({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    });
    const p = rawSafetensors(tmpPath("overlap.safetensors"), overlap, data);
    throwsTsdpo(() => readSafetensorsHeader(p), "input", p, 'tensor "b" (bytes 4..12) overlaps tensor "a" (bytes 0..8)');
    const hole = JSON.stringify({
      a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
      b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    });
    const q = rawSafetensors(tmpPath("hole.safetensors"), hole, data);
    throwsTsdpo(() => readSafetensorsHeader(q), "input", q, 'bytes 4..8 of the data region belong to no tensor (before tensor "b")');
    const r = rawSafetensors(tmpPath("trailing.safetensors"), okHeader(), data);
    throwsTsdpo(() => readSafetensorsHeader(r), "input", r, "the data region has 12 bytes but the tensors cover only 8");
  });

  test("missing file is an io error naming it", () => {
    const p = join(tmp, "absent.safetensors");
    throwsTsdpo(() => readSafetensors(p), "io", p, "file not found");
  });

  test("folder: missing shard, index naming a missing tensor, bad index JSON, no weights at all", () => {
    const tensors = [0, 1, 2].map((i) => ({ name: `t${i}`, shape: [4], data: new Float32Array(4).fill(i) }));
    const folder = tmpPath("broken");
    writeSafetensorsSharded(folder, tensors, { maxShardBytes: 16 });
    const indexPath = join(folder, "model.safetensors.index.json");
    const index = JSON.parse(readFileSync(indexPath, "utf8"));

    index.weight_map["ghost"] = "model-00001-of-00003.safetensors";
    writeFileSync(indexPath, JSON.stringify(index));
    throwsTsdpo(() => openSafetensorsFolder(folder), "input", indexPath,
      'weight_map puts tensor "ghost" in model-00001-of-00003.safetensors, but model-00001-of-00003.safetensors has no such tensor');

    delete index.weight_map["ghost"];
    writeFileSync(indexPath, JSON.stringify(index));
    unlinkSync(join(folder, "model-00002-of-00003.safetensors"));
    throwsTsdpo(() => readSafetensorsFolder(folder), "input", indexPath, 'shard model-00002-of-00003.safetensors (holding tensor "t1"', "is missing");

    writeFileSync(indexPath, "{\"weight_map\": {");
    throwsTsdpo(() => openSafetensorsFolder(folder), "input", indexPath, "not valid JSON");
    writeFileSync(indexPath, "{\"metadata\": {}}");
    throwsTsdpo(() => openSafetensorsFolder(folder), "input", indexPath, '"weight_map" is missing');

    const empty = tmpPath("empty-folder");
    writeSafetensorsSharded(empty, [], { maxShardBytes: 1 });
    unlinkSync(join(empty, "model.safetensors"));
    throwsTsdpo(() => openSafetensorsFolder(empty), "io", empty, "neither model.safetensors nor model.safetensors.index.json");
    writeFileSync(join(empty, "pytorch_model.bin"), "");
    throwsTsdpo(() => openSafetensorsFolder(empty), "unsupported", "PyTorch .bin weights");
  });

  test("a corrupt shard is reported with its own path", () => {
    const folder = tmpPath("corrupt-shard");
    const tensors = [0, 1].map((i) => ({ name: `t${i}`, shape: [4], data: new Float32Array(4) }));
    writeSafetensorsSharded(folder, tensors, { maxShardBytes: 16 });
    const shard = join(folder, "model-00002-of-00002.safetensors");
    truncateSync(shard, 6);
    throwsTsdpo(() => openSafetensorsFolder(folder), "input", shard, "file is truncated");
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("config.json", () => {
  const base = (cfg: Partial<LlamaConfig>): LlamaConfig => ({
    family: "llama", V: 0, C: 0, L: 0, NH: 0, NKV: 0, HS: 0, FF: 0, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 2048, slidingWindow: null, ...cfg,
  });

  test("SmolLM-135M (model_type llama, tied)", () => {
    assert.deepEqual(
      readHfConfig(fixture("io", "smollm-135m.config.json")),
      base({ V: 49152, C: 576, L: 30, NH: 9, NKV: 3, HS: 64, FF: 1536, rmsEps: 1e-5, tiedEmbeddings: true }),
    );
  });

  test("Qwen2.5-0.5B (q/k/v biases, rope_theta 1e6, use_sliding_window false)", () => {
    assert.deepEqual(
      readHfConfig(fixture("io", "qwen2.5-0.5b.config.json")),
      base({
        family: "qwen2", V: 151936, C: 896, L: 24, NH: 14, NKV: 2, HS: 64, FF: 4864, ropeTheta: 1e6,
        tiedEmbeddings: true, qkvBias: true, maxSeqLen: 32768,
      }),
    );
  });

  const qwen3 = {
    architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", vocab_size: 151936, hidden_size: 1024,
    intermediate_size: 3072, num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128,
    max_position_embeddings: 40960, rms_norm_eps: 1e-6, rope_theta: 1000000, rope_scaling: null,
    tie_word_embeddings: true, attention_bias: false, use_sliding_window: false, sliding_window: null,
    max_window_layers: 28, hidden_act: "silu", torch_dtype: "bfloat16",
  };

  test("Qwen3-0.6B: head_dim 128 differs from hidden/heads, q/k norms, no biases", () => {
    assert.deepEqual(
      llamaConfigFromHf(qwen3, "qwen3/config.json"),
      base({
        family: "qwen3", V: 151936, C: 1024, L: 28, NH: 16, NKV: 8, HS: 128, FF: 3072, ropeTheta: 1e6,
        tiedEmbeddings: true, qkNorm: true, maxSeqLen: 40960,
      }),
    );
    const { head_dim: _, ...noHeadDim } = qwen3;
    assert.equal(llamaConfigFromHf({ ...noHeadDim, hidden_size: 512 }, "c.json").HS, 128, "Qwen3Config's default head_dim");
  });

  const mistral = {
    model_type: "mistral", vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
    num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 32768, rms_norm_eps: 1e-5,
    rope_theta: 10000.0, sliding_window: 4096, tie_word_embeddings: false,
  };

  test("Mistral-7B-v0.1: sliding window (default 4096 when absent, none when null)", () => {
    assert.deepEqual(
      llamaConfigFromHf(mistral, "m.json"),
      base({ family: "mistral", V: 32000, C: 4096, L: 32, NH: 32, NKV: 8, HS: 128, FF: 14336, rmsEps: 1e-5, maxSeqLen: 32768, slidingWindow: 4096 }),
    );
    const { sliding_window: _, ...noWindow } = mistral;
    assert.equal(llamaConfigFromHf(noWindow, "m.json").slidingWindow, 4096);
    assert.equal(llamaConfigFromHf({ ...mistral, sliding_window: null }, "m.json").slidingWindow, null);
  });

  test("Llama-3.2-1B: llama3 RoPE scaling; old-style {type: linear}; transformers-5 rope_parameters", () => {
    const llama32 = {
      model_type: "llama", vocab_size: 128256, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
      num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, max_position_embeddings: 131072, rms_norm_eps: 1e-5,
      rope_theta: 500000.0, tie_word_embeddings: true,
      rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
    };
    const cfg = llamaConfigFromHf(llama32, "l.json");
    assert.deepEqual(cfg.ropeScaling, { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    assert.equal(cfg.ropeTheta, 500000);
    assert.deepEqual(llamaConfigFromHf({ ...llama32, rope_scaling: { type: "linear", factor: 2 } }, "l.json").ropeScaling, { type: "linear", factor: 2 });
    assert.deepEqual(llamaConfigFromHf({ ...llama32, rope_scaling: { rope_type: "default" } }, "l.json").ropeScaling, { type: "none" });
    const { rope_theta: _t, rope_scaling: _s, ...v5 } = llama32;
    const c5 = llamaConfigFromHf({ ...v5, rope_parameters: { rope_type: "linear", factor: 4, rope_theta: 250000 } }, "l.json");
    assert.deepEqual([c5.ropeTheta, c5.ropeScaling], [250000, { type: "linear", factor: 4 }]);
  });

  test("defaults when only the sizes are given (transformers' LlamaConfig defaults)", () => {
    const cfg = llamaConfigFromHf(
      { model_type: "llama", vocab_size: 10, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: null },
      "min.json",
    );
    assert.deepEqual(cfg, base({ V: 10, C: 32, L: 2, NH: 4, NKV: 4, HS: 8, FF: 64 }));
  });

  test("Qwen2 sliding window: all layers slide, none slide, or the layers from max_window_layers on (per-layer attention)", () => {
    const q = { ...JSON.parse(readFileSync(fixture("io", "qwen2.5-0.5b.config.json"), "utf8")), use_sliding_window: true };
    assert.equal(llamaConfigFromHf({ ...q, max_window_layers: 0 }, "q.json").slidingWindow, 32768);
    assert.equal(llamaConfigFromHf({ ...q, max_window_layers: 0 }, "q.json").layers, undefined);
    assert.equal(llamaConfigFromHf({ ...q, max_window_layers: 24 }, "q.json").slidingWindow, null);
    const mixed = llamaConfigFromHf({ ...q, max_window_layers: 12 }, "q.json");
    assert.deepEqual(mixed.layers!.map((a) => a.window), Array.from({ length: 24 }, (_, l) => (l >= 12 ? 32768 : null)));
    assert.ok(mixed.layers!.every((a) => a.rope && a.ropeTheta === mixed.ropeTheta));
    // written back as use_sliding_window with max_window_layers 12, and read again the same
    const written = JSON.parse(JSON.stringify(hfConfigFromLlama(mixed, { bosTokenId: null, eosTokenId: null, torchDtype: "float32" })));
    assert.deepEqual([written.use_sliding_window, written.sliding_window, written.max_window_layers], [true, 32768, 12]);
    assert.deepEqual(llamaConfigFromHf(written, "out.json"), mixed);
    const layerTypes = (k: string[]): unknown => ({ ...q, layer_types: Array.from({ length: 24 }, (_, i) => k[i % k.length]) });
    assert.equal(llamaConfigFromHf(layerTypes(["full_attention"]), "q.json").slidingWindow, null);
    const alternating = llamaConfigFromHf(layerTypes(["full_attention", "sliding_attention"]), "q.json");
    assert.deepEqual(alternating.layers!.map((a) => a.window), Array.from({ length: 24 }, (_, l) => (l % 2 ? 32768 : null)));
    // which transformers' Qwen2 config cannot express (only the last layers slide), so export refuses it
    throwsTsdpo(() => hfConfigFromLlama(alternating, { bosTokenId: null, eosTokenId: null, torchDtype: "float32" }), "unsupported", "not the last ones");
  });

  test("errors name the file, the key and the value", () => {
    const smol = JSON.parse(readFileSync(fixture("io", "smollm-135m.config.json"), "utf8"));
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, model_type: "phi" }, "/m/config.json"), "unsupported",
      "/m/config.json", 'model_type "phi" is not supported', "llama, mistral, qwen2, qwen3");
    // mixture-of-experts, state-space and hybrid models are named as such, from config.json and from GGUF
    for (const [name, kind] of [["mixtral", "a mixture-of-experts model"], ["qwen3_moe", "a mixture-of-experts model"], ["mamba", "a state-space (recurrent) model"], ["jamba", "a hybrid attention/state-space model"]]) {
      throwsTsdpo(() => llamaConfigFromHf({ ...smol, model_type: name }, "/m/config.json"), "unsupported", `model_type "${name}" is ${kind}`, "dense decoders only");
      throwsTsdpo(() => llamaConfigFromGguf(fakeGguf(name.replace("_", ""), {}, {})), "unsupported", `general.architecture "${name.replace("_", "")}" is ${kind}`);
    }
    const { hidden_size: _, ...noHidden } = smol;
    throwsTsdpo(() => llamaConfigFromHf(noHidden, "/m/config.json"), "input", "/m/config.json", 'required key "hidden_size" is missing');
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, hidden_size: "576" }, "/m/config.json"), "input", 'key "hidden_size" must be a positive integer, got "576"');
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, tie_word_embeddings: "yes" }, "c"), "input", 'key "tie_word_embeddings" must be true or false');
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, rope_theta: -1 }, "c"), "input", 'key "rope_theta" must be a positive number, got -1');
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, rope_scaling: { rope_type: "yarn", factor: 4 } }, "c"), "unsupported", 'rope_scaling type "yarn"');
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, rope_scaling: { rope_type: "llama3", factor: 8 } }, "c"), "input", '"rope_scaling.low_freq_factor" is missing');
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, attention_bias: true }, "c"), "unsupported", "attention_bias");
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, hidden_act: "gelu" }, "c"), "unsupported", 'hidden_act "gelu"');
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, num_key_value_heads: 4 }, "c"), "input", "num_attention_heads 9 is not a multiple of num_key_value_heads 4");
    throwsTsdpo(() => llamaConfigFromHf({ ...smol, model_type: undefined }, "c"), "input", '"model_type" is missing');
    throwsTsdpo(() => llamaConfigFromHf([1], "c"), "input", "must hold a JSON object");
  });

  test("hfConfigFromLlama writes a config that parses back to the same LlamaConfig, for every family", () => {
    const cases: LlamaConfig[] = [
      base({ V: 49152, C: 576, L: 30, NH: 9, NKV: 3, HS: 64, FF: 1536, rmsEps: 1e-5, tiedEmbeddings: true }),
      base({ V: 128, C: 64, L: 2, NH: 4, NKV: 2, HS: 32, FF: 96, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } }),
      base({ family: "mistral", V: 32000, C: 4096, L: 32, NH: 32, NKV: 8, HS: 128, FF: 14336, maxSeqLen: 32768, slidingWindow: 4096 }),
      base({ family: "mistral", V: 100, C: 64, L: 1, NH: 2, NKV: 2, HS: 32, FF: 10, slidingWindow: null, ropeScaling: { type: "linear", factor: 2 } }),
      base({ family: "qwen2", V: 151936, C: 896, L: 24, NH: 14, NKV: 2, HS: 64, FF: 4864, ropeTheta: 1e6, tiedEmbeddings: true, qkvBias: true, maxSeqLen: 32768 }),
      base({ family: "qwen2", V: 50, C: 32, L: 3, NH: 4, NKV: 1, HS: 8, FF: 40, qkvBias: true, slidingWindow: 128 }),
      base({ family: "qwen3", V: 151936, C: 1024, L: 28, NH: 16, NKV: 8, HS: 128, FF: 3072, ropeTheta: 1e6, tiedEmbeddings: true, qkNorm: true, maxSeqLen: 40960 }),
    ];
    const arch: Record<string, string> = { llama: "LlamaForCausalLM", mistral: "MistralForCausalLM", qwen2: "Qwen2ForCausalLM", qwen3: "Qwen3ForCausalLM" };
    for (const cfg of cases) {
      const hf = hfConfigFromLlama(cfg, { bosTokenId: 1, eosTokenId: [2, 3], torchDtype: "bfloat16" });
      const json = JSON.parse(JSON.stringify(hf));
      assert.deepEqual(json.architectures, [arch[cfg.family]]);
      assert.equal(json.model_type, cfg.family);
      assert.deepEqual([json.bos_token_id, json.eos_token_id, json.torch_dtype], [1, [2, 3], "bfloat16"]);
      assert.deepEqual(llamaConfigFromHf(json, "out/config.json"), cfg, `round trip of ${cfg.family}`);
    }
    throwsTsdpo(() => hfConfigFromLlama(base({ qkvBias: true, V: 1, C: 2, L: 1, NH: 1, NKV: 1, HS: 2, FF: 1 }), { bosTokenId: null, eosTokenId: null, torchDtype: "float32" }),
      "unsupported", "model_type llama");
  });
});

// ---------------------------------------------------------------------------------------------------------------

function fakeGguf(arch: string, meta: Record<string, GgufValue>, tensors: Record<string, number[]>): GgufFile {
  return {
    path: "fake.gguf",
    version: 3,
    metadata: new Map<string, GgufValue>([["general.architecture", arch], ...Object.entries(meta)]),
    tensors: new Map(Object.entries(tensors).map(([name, dims]) => [name, { name, dims, type: 0, offset: 0 }])),
    dataOffset: 0,
    buffer: Buffer.alloc(0),
  };
}

describe("GGUF config", () => {
  test("stories260K", () => {
    assert.deepEqual(llamaConfigFromGguf(readGguf(storiesGguf)), {
      family: "llama", V: 512, C: 64, L: 5, NH: 8, NKV: 4, HS: 8, FF: 172, ropeTheta: 10000, ropeScaling: { type: "none" },
      rmsEps: Math.fround(1e-5), // stored as float32
      tiedEmbeddings: false, // output.weight is its own tensor (a copy of token_embd)
      qkvBias: false, qkNorm: false, maxSeqLen: 2048, slidingWindow: null,
    });
  });

  const qwen3Meta: Record<string, GgufValue> = {
    "qwen3.context_length": 40960, "qwen3.embedding_length": 1024, "qwen3.block_count": 28,
    "qwen3.feed_forward_length": 3072, "qwen3.attention.head_count": 16, "qwen3.attention.head_count_kv": 8,
    "qwen3.attention.key_length": 128, "qwen3.attention.value_length": 128, "qwen3.rope.freq_base": 1000000,
    "qwen3.attention.layer_norm_rms_epsilon": 1e-6, "tokenizer.ggml.tokens": ["a", "b"],
  };
  const qwen3Tensors = { "token_embd.weight": [1024, 151936], "blk.0.attn_q_norm.weight": [128], "blk.0.attn_q.weight": [1024, 2048] };

  test("qwen3 (tied: no output.weight; key_length gives the head size) and qwen2 (biases)", () => {
    assert.deepEqual(llamaConfigFromGguf(fakeGguf("qwen3", qwen3Meta, qwen3Tensors)), {
      family: "qwen3", V: 151936, C: 1024, L: 28, NH: 16, NKV: 8, HS: 128, FF: 3072, ropeTheta: 1e6,
      ropeScaling: { type: "none" }, rmsEps: 1e-6, tiedEmbeddings: true, qkvBias: false, qkNorm: true,
      maxSeqLen: 40960, slidingWindow: null,
    });
    const q2 = fakeGguf("qwen2", {
      "qwen2.context_length": 32768, "qwen2.embedding_length": 896, "qwen2.block_count": 24,
      "qwen2.feed_forward_length": 4864, "qwen2.attention.head_count": 14, "qwen2.attention.head_count_kv": 2,
      "qwen2.rope.freq_base": 1000000, "qwen2.attention.layer_norm_rms_epsilon": 1e-6,
    }, { "token_embd.weight": [896, 151936], "output.weight": [896, 151936], "blk.0.attn_q.bias": [896] });
    const c = llamaConfigFromGguf(q2);
    assert.deepEqual([c.HS, c.NKV, c.qkvBias, c.qkNorm, c.tiedEmbeddings], [64, 2, true, false, false]);
  });

  test("RoPE scaling: linear read, yarn and rope_freqs refused", () => {
    const linear = fakeGguf("qwen3", { ...qwen3Meta, "qwen3.rope.scaling.type": "linear", "qwen3.rope.scaling.factor": 4 }, qwen3Tensors);
    assert.deepEqual(llamaConfigFromGguf(linear).ropeScaling, { type: "linear", factor: 4 });
    const yarn = fakeGguf("qwen3", { ...qwen3Meta, "qwen3.rope.scaling.type": "yarn", "qwen3.rope.scaling.factor": 4 }, qwen3Tensors);
    throwsTsdpo(() => llamaConfigFromGguf(yarn), "unsupported", "fake.gguf", 'qwen3.rope.scaling.type is "yarn"');
    const freqs = fakeGguf("qwen3", qwen3Meta, { ...qwen3Tensors, "rope_freqs.weight": [64] });
    throwsTsdpo(() => llamaConfigFromGguf(freqs), "unsupported", "rope_freqs.weight");
  });

  test("errors: unknown architecture, missing key, partial RoPE, per-layer sizes, experts, too many tokens", () => {
    throwsTsdpo(() => llamaConfigFromGguf(fakeGguf("bloom", {}, {})), "unsupported", "fake.gguf", 'general.architecture "bloom"', "llama, mistral, qwen2, qwen3");
    const { "qwen3.embedding_length": _, ...noEmbd } = qwen3Meta;
    throwsTsdpo(() => llamaConfigFromGguf(fakeGguf("qwen3", noEmbd, qwen3Tensors)), "input", "fake.gguf", "qwen3.embedding_length is missing");
    throwsTsdpo(() => llamaConfigFromGguf(fakeGguf("qwen3", { ...qwen3Meta, "qwen3.rope.dimension_count": 64 }, qwen3Tensors)), "unsupported", "partial RoPE");
    throwsTsdpo(() => llamaConfigFromGguf(fakeGguf("qwen3", { ...qwen3Meta, "qwen3.feed_forward_length": [3072, 4096] }, qwen3Tensors)), "unsupported", "differs between layers");
    assert.equal(llamaConfigFromGguf(fakeGguf("qwen3", { ...qwen3Meta, "qwen3.feed_forward_length": [3072, 3072] }, qwen3Tensors)).FF, 3072);
    throwsTsdpo(() => llamaConfigFromGguf(fakeGguf("qwen3", { ...qwen3Meta, "qwen3.expert_count": 8 }, qwen3Tensors)), "unsupported", "mixture-of-experts");
    throwsTsdpo(() => llamaConfigFromGguf(fakeGguf("qwen3", { ...qwen3Meta, "qwen3.block_count": "28" }, qwen3Tensors)), "input", "qwen3.block_count must be a number");
    throwsTsdpo(() => llamaConfigFromGguf(fakeGguf("qwen3", qwen3Meta, { ...qwen3Tensors, "token_embd.weight": [1024, 1] })), "input", "tokenizer.ggml.tokens has 2 tokens but token_embd.weight has only 1 rows");
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("tensor names", () => {
  test("examples both ways", () => {
    assert.equal(hfTensorName("tok_embd", "llama"), "model.embed_tokens.weight");
    assert.equal(hfTensorName("layers.12.wq", "llama"), "model.layers.12.self_attn.q_proj.weight");
    assert.equal(hfTensorName("layers.0.bk", "llama"), "model.layers.0.self_attn.k_proj.bias");
    assert.equal(hfTensorName("layers.3.ffn_norm", "llama"), "model.layers.3.post_attention_layernorm.weight");
    assert.equal(hfTensorName("lm_head", "llama"), "lm_head.weight");
    assert.equal(ggufTensorName("layers.12.wo"), "blk.12.attn_output.weight");
    assert.equal(ggufTensorName("layers.1.k_norm"), "blk.1.attn_k_norm.weight");
    assert.equal(ggufTensorName("out_norm"), "output_norm.weight");
    assert.equal(tsdpoNameFromHf("model.layers.7.mlp.down_proj.weight", "llama"), "layers.7.w_down");
    assert.equal(tsdpoNameFromGguf("blk.7.ffn_gate.weight"), "layers.7.w_gate");
    assert.equal(tsdpoNameFromHf("model.layers.0.self_attn.rotary_emb.inv_freq", "llama"), null);
    assert.equal(tsdpoNameFromHf("model.layers.01.mlp.up_proj.weight", "llama"), null);
    assert.equal(tsdpoNameFromGguf("rope_freqs.weight"), null);
    assert.ok(isIgnorableHfTensor("model.layers.0.self_attn.rotary_emb.inv_freq"));
    assert.throws(() => hfTensorName("layers.0.nope", "llama"), /not a tsdpo parameter name/);
  });

  test("every parameter of a config with biases, q/k norms and an lm_head maps both ways, injectively", () => {
    const cfg: LlamaConfig = {
      family: "qwen2", V: 10, C: 8, L: 3, NH: 2, NKV: 1, HS: 4, FF: 12, ropeTheta: 1e4, ropeScaling: { type: "none" },
      rmsEps: 1e-6, tiedEmbeddings: false, qkvBias: true, qkNorm: true, maxSeqLen: 16, slidingWindow: null,
    };
    const names = paramSpecs(cfg).map((s) => s.name);
    const hf = names.map((n) => hfTensorName(n, cfg.family));
    const gg = names.map(ggufTensorName);
    assert.equal(new Set(hf).size, names.length);
    assert.equal(new Set(gg).size, names.length);
    assert.deepEqual(hf.map((n) => tsdpoNameFromHf(n, cfg.family)), names);
    assert.deepEqual(gg.map(tsdpoNameFromGguf), names);
  });

  for (const family of ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "smollm3", "granite", "olmo2"]) {
    test(`the PyTorch ${family} fixture's HF weights are exactly paramSpecs of its config, same shapes`, () => {
      const h = readSafetensorsHeader(fixture("torch", `${family}.safetensors`));
      const cfg = llamaConfigFromHf(JSON.parse(h.metadata["config"]!), "fixture config");
      const weights = [...h.tensors.values()].filter((e) => !/^(logits|logp|grad\.|adamw_final\.|dpo|logits64|logp64)/.test(e.name));
      const got = new Map(weights.map((e) => [tsdpoNameFromHf(e.name, cfg.family), e.shape]));
      assert.ok(!got.has(null), `unmapped: ${weights.filter((e) => !tsdpoNameFromHf(e.name, cfg.family)).map((e) => e.name)}`);
      assert.deepEqual(got, new Map(paramSpecs(cfg).map((s) => [s.name, s.shape])));
    });
  }

  test("stories260K: every GGUF tensor maps to a parameter whose shape is its dims reversed", () => {
    const f = readGguf(storiesGguf);
    const cfg = llamaConfigFromGguf(f);
    const got = new Map([...f.tensors.values()].map((t) => [tsdpoNameFromGguf(t.name), ggufShape(t.dims)]));
    assert.deepEqual(got, new Map(paramSpecs(cfg).map((s) => [s.name, s.shape])));
  });
});

describe("GGUF Q/K row permutation", () => {
  test("hand example: HS 4, two heads", () => {
    // Within a head, HF row s*2 + i is GGUF row 2i + s: HF rows [0,1,2,3] <- GGUF rows [0,2,1,3].
    const gguf = f32(0, 1, 2, 3, 4, 5, 6, 7);
    assert.deepEqual(ggufToHfQkRows(gguf, 2, 4, 1), f32(0, 2, 1, 3, 4, 6, 5, 7));
    assert.deepEqual(hfToGgufQkRows(f32(0, 2, 1, 3, 4, 6, 5, 7), 2, 4, 1), gguf);
  });

  test("a bijection on rows whose inverse round-trips", () => {
    const nHeads = 3, HS = 8, cols = 5;
    // Each element encodes (row, col) so the output tells which source row landed where.
    const data = Float32Array.from({ length: nHeads * HS * cols }, (_, k) => 1000 * Math.floor(k / cols) + (k % cols));
    for (const perm of [ggufToHfQkRows, hfToGgufQkRows]) {
      const out = perm(data, nHeads, HS, cols);
      const sources = new Set<number>();
      for (let r = 0; r < nHeads * HS; r++) {
        const src = Math.floor(out[r * cols]! / 1000);
        for (let c = 0; c < cols; c++) assert.equal(out[r * cols + c], 1000 * src + c, "rows move whole");
        assert.equal(Math.floor(src / HS), Math.floor(r / HS), "rows stay in their head");
        sources.add(src);
      }
      assert.equal(sources.size, nHeads * HS);
    }
    assert.deepEqual(hfToGgufQkRows(ggufToHfQkRows(data, nHeads, HS, cols), nHeads, HS, cols), data);
    assert.deepEqual(ggufToHfQkRows(hfToGgufQkRows(data, nHeads, HS, cols), nHeads, HS, cols), data);
    assert.deepEqual(["llama", "mistral", "qwen2", "qwen3"].map((f) => ggufQkPermuted(f as LlamaConfig["family"])), [true, true, false, false]);
  });

  // A float64 Hugging Face-style forward (rotate-half RoPE) over stories260K's weights read with ggufShape (no
  // transpose) and ggufToHfQkRows, compared with llama.cpp's logits. If the layout or the permutation were wrong,
  // the logits would be far off; the negative control shows the comparison is sensitive to the permutation.
  function storiesLogits(ids: number[], unpermute: boolean): Float64Array[] {
    const f = readGguf(storiesGguf);
    const cfg = llamaConfigFromGguf(f);
    const { C, L, NH, NKV, HS, FF, V } = cfg;
    const W = (name: string): Float32Array => readGgufTensor(f, ggufTensorName(name));
    const T = ids.length;
    const matvec = (w: Float32Array, x: Float64Array, rows: number, cols: number): Float64Array => {
      const y = new Float64Array(rows);
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!;
        y[r] = s;
      }
      return y;
    };
    const rmsnorm = (x: Float64Array, g: Float32Array): Float64Array => {
      let ss = 0;
      for (const v of x) ss += v * v;
      const inv = 1 / Math.sqrt(ss / x.length + cfg.rmsEps);
      return x.map((v, i) => v * inv * g[i]!);
    };
    const rope = (v: Float64Array, nHeads: number, pos: number): void => {
      const half = HS / 2;
      for (let h = 0; h < nHeads; h++)
        for (let i = 0; i < half; i++) {
          const ang = pos * Math.pow(cfg.ropeTheta, (-2 * i) / HS);
          const a = v[h * HS + i]!, b = v[h * HS + i + half]!;
          v[h * HS + i] = a * Math.cos(ang) - b * Math.sin(ang);
          v[h * HS + i + half] = b * Math.cos(ang) + a * Math.sin(ang);
        }
    };
    const embd = W("tok_embd");
    const xs = ids.map((id) => Float64Array.from(embd.subarray(id * C, (id + 1) * C)));
    for (let l = 0; l < L; l++) {
      const p = `layers.${l}.`;
      let wq = W(p + "wq"), wk = W(p + "wk");
      if (unpermute) {
        wq = ggufToHfQkRows(wq, NH, HS, C);
        wk = ggufToHfQkRows(wk, NKV, HS, C);
      }
      const wv = W(p + "wv"), wo = W(p + "wo");
      const hs = xs.map((x) => rmsnorm(x, W(p + "attn_norm")));
      const qs = hs.map((h, t) => { const q = matvec(wq, h, NH * HS, C); rope(q, NH, t); return q; });
      const ks = hs.map((h, t) => { const k = matvec(wk, h, NKV * HS, C); rope(k, NKV, t); return k; });
      const vs = hs.map((h) => matvec(wv, h, NKV * HS, C));
      for (let t = 0; t < T; t++) {
        const att = new Float64Array(NH * HS);
        for (let h = 0; h < NH; h++) {
          const kv = Math.floor(h / (NH / NKV));
          const scores = Array.from({ length: t + 1 }, (_, s) => {
            let d = 0;
            for (let i = 0; i < HS; i++) d += qs[t]![h * HS + i]! * ks[s]![kv * HS + i]!;
            return d / Math.sqrt(HS);
          });
          const m = Math.max(...scores);
          const e = scores.map((x) => Math.exp(x - m));
          const z = e.reduce((a, b) => a + b, 0);
          for (let s = 0; s <= t; s++)
            for (let i = 0; i < HS; i++) att[h * HS + i] += (e[s]! / z) * vs[s]![kv * HS + i]!;
        }
        const o = matvec(wo, att, C, NH * HS);
        for (let c = 0; c < C; c++) xs[t]![c] += o[c]!;
        const h2 = rmsnorm(xs[t]!, W(p + "ffn_norm"));
        const g = matvec(W(p + "w_gate"), h2, FF, C);
        const u = matvec(W(p + "w_up"), h2, FF, C);
        const a = g.map((x, i) => (x / (1 + Math.exp(-x))) * u[i]!);
        const d = matvec(W(p + "w_down"), a, C, FF);
        for (let c = 0; c < C; c++) xs[t]![c] += d[c]!;
      }
    }
    const head = W(cfg.tiedEmbeddings ? "tok_embd" : "lm_head");
    return xs.map((x) => matvec(head, rmsnorm(x, W("out_norm")), V, C));
  }

  test("stories260K: HF-layout forward on un-permuted GGUF weights matches llama.cpp's logits", () => {
    const ref = JSON.parse(readFileSync(fixture("stories260k-llamacpp.json"), "utf8"));
    const { ids, logits } = ref.texts[0] as { ids: number[]; logits: number[][] };
    const ours = storiesLogits(ids, true);
    for (let t = 0; t < ids.length; t++) assertAllClose(ours[t]!, logits[t]!, 1e-4, 1e-5, `logits at position ${t}`);
    const wrong = storiesLogits(ids.slice(0, 4), false);
    assert.ok(maxAbsDiff(wrong[3]!, logits[3]!) > 1e-2, "without the Q/K permutation the logits must differ");
  });
});

test("no temporary files are left in the test folder", () => {
  const leftovers = readdirSync(tmp, { recursive: true }).map(String).filter((f) => f.includes(".tmp-"));
  assert.deepEqual(leftovers, []);
  assert.ok(existsSync(tmp));
});
