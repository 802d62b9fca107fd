// The GGUF writer against the spec (a file assembled byte by byte from docs/gguf.md), against a file written by
// llama.cpp's own tooling (stories260K, rewritten byte for byte), and through tsdpo's reader for every value type,
// nested arrays, the three tensor types and a non-default alignment.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import { GgmlType, readGguf, readGgufTensor } from "../src/io/gguf.js";
import {
  type GgufMetaValue,
  ggufChunks,
  gv,
  readGgufMetadataTyped,
  writeGguf,
} from "../src/io/ggufwriter.js";
import { storiesGguf } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-ggufwriter-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("a one-key, one-tensor file has exactly the bytes docs/gguf.md prescribes", () => {
  const path = join(tmp, "tiny.gguf");
  const size = writeGguf(path, {
    metadata: [["a.b", gv.u32(7)]],
    tensors: [{ name: "t", dims: [2], type: "F32", data: Float32Array.of(1.5, -2) }],
  });
  // header 24 + key/value (8+3 key, 4 type, 4 value) 19 + tensor info (8+1 name, 4 n_dims, 8 dim, 4 type, 8 offset)
  // 33 = 76 bytes, padded to 96; then 8 bytes of data padded to 32
  const want = Buffer.alloc(128);
  let o = 0;
  want.write("GGUF", o, "latin1"); o += 4;
  want.writeUInt32LE(3, o); o += 4;
  want.writeBigUInt64LE(1n, o); o += 8; // tensors
  want.writeBigUInt64LE(1n, o); o += 8; // key/values
  want.writeBigUInt64LE(3n, o); o += 8;
  want.write("a.b", o, "latin1"); o += 3;
  want.writeUInt32LE(4, o); o += 4; // GGUF_TYPE_UINT32
  want.writeUInt32LE(7, o); o += 4;
  want.writeBigUInt64LE(1n, o); o += 8;
  want.write("t", o, "latin1"); o += 1;
  want.writeUInt32LE(1, o); o += 4;
  want.writeBigUInt64LE(2n, o); o += 8;
  want.writeUInt32LE(0, o); o += 4; // GGML_TYPE_F32
  want.writeBigUInt64LE(0n, o); o += 8;
  assert.equal(o, 76);
  want.writeFloatLE(1.5, 96);
  want.writeFloatLE(-2, 100);
  assert.equal(size, 128);
  assert.deepEqual(readFileSync(path), want);
});

test("stories260K (written by llama.cpp's tooling) is rewritten byte for byte from its typed metadata and tensors", () => {
  const f = readGguf(storiesGguf);
  const metadata = readGgufMetadataTyped(storiesGguf);
  assert.equal(metadata.length, f.metadata.size);
  const tensors = [...f.tensors.values()].map((t) => {
    assert.equal(t.type, GgmlType.F32);
    return { name: t.name, dims: t.dims, type: "F32" as const, data: readGgufTensor(f, t.name) };
  });
  const bytes = Buffer.concat(ggufChunks({ metadata, tensors }));
  assert.equal(bytes.length, f.buffer.length);
  assert.ok(bytes.equals(f.buffer), "rewritten file differs from the original");
});

const EVERY_TYPE: Array<[string, GgufMetaValue]> = [
  ["t.u8", gv.u8(255)],
  ["t.i8", gv.i8(-128)],
  ["t.u16", gv.u16(65535)],
  ["t.i16", gv.i16(-32768)],
  ["t.u32", gv.u32(4294967295)],
  ["t.i32", gv.i32(-2147483648)],
  ["t.f32", gv.f32(0.1)], // stored as the nearest float32
  ["t.f64", gv.f64(0.1)],
  ["t.bool", gv.bool(true)],
  ["t.bool0", gv.bool(false)],
  ["t.str", gv.str("héllo ▁ 🦙\n\0end")],
  ["t.empty", gv.str("")],
  ["t.u64", gv.u64(18446744073709551615n)],
  ["t.i64", gv.i64(-9223372036854775808n)],
  ["t.arr.u8", { type: "array", itemType: "u8", value: [0, 1, 255] }],
  ["t.arr.i16", { type: "array", itemType: "i16", value: [-5, 5] }],
  ["t.arr.f32", gv.f32s([1.5, -0.25, 3e-8])],
  ["t.arr.f64", { type: "array", itemType: "f64", value: [Math.PI] }],
  ["t.arr.i32", gv.i32s([-1, 0, 7])],
  ["t.arr.u64", { type: "array", itemType: "u64", value: [0n, 1n << 40n] }],
  ["t.arr.bool", { type: "array", itemType: "bool", value: [true, false] }],
  ["t.arr.str", gv.strings(["a", "", "▁b c"])],
  ["t.arr.empty", gv.strings([])],
  [
    "t.arr.nested",
    {
      type: "array",
      itemType: "array",
      value: [gv.i32s([1, 2]), gv.strings(["x"]), { type: "array", itemType: "array", value: [gv.f32s([0.5])] }],
    },
  ],
];

test("every metadata value type, arrays and nested arrays come back through readGguf and readGgufMetadataTyped", () => {
  const path = join(tmp, "types.gguf");
  writeGguf(path, { metadata: EVERY_TYPE, tensors: [] });
  const f = readGguf(path);
  assert.equal(f.version, 3);
  assert.equal(f.tensors.size, 0);
  const m = f.metadata;
  assert.equal(m.get("t.u8"), 255);
  assert.equal(m.get("t.i8"), -128);
  assert.equal(m.get("t.u16"), 65535);
  assert.equal(m.get("t.i16"), -32768);
  assert.equal(m.get("t.u32"), 4294967295);
  assert.equal(m.get("t.i32"), -2147483648);
  assert.equal(m.get("t.f32"), Math.fround(0.1));
  assert.equal(m.get("t.f64"), 0.1);
  assert.equal(m.get("t.bool"), true);
  assert.equal(m.get("t.bool0"), false);
  assert.equal(m.get("t.str"), "héllo ▁ 🦙\n\0end");
  assert.equal(m.get("t.empty"), "");
  assert.equal(m.get("t.u64"), 18446744073709551615n);
  assert.equal(m.get("t.i64"), -9223372036854775808n);
  assert.deepEqual(m.get("t.arr.u8"), [0, 1, 255]);
  assert.deepEqual(m.get("t.arr.i16"), [-5, 5]);
  assert.deepEqual(m.get("t.arr.f32"), [1.5, -0.25, Math.fround(3e-8)]);
  assert.deepEqual(m.get("t.arr.f64"), [Math.PI]);
  assert.deepEqual(m.get("t.arr.i32"), [-1, 0, 7]);
  assert.deepEqual(m.get("t.arr.u64"), [0n, 1n << 40n]);
  assert.deepEqual(m.get("t.arr.bool"), [true, false]);
  assert.deepEqual(m.get("t.arr.str"), ["a", "", "▁b c"]);
  assert.deepEqual(m.get("t.arr.empty"), []);
  assert.deepEqual(m.get("t.arr.nested"), [[1, 2], ["x"], [[0.5]]]);
  assert.deepEqual([...m.keys()], EVERY_TYPE.map(([k]) => k), "file order is kept");

  // the typed reader gives back what was written, f32 values rounded to float32
  const typed = readGgufMetadataTyped(path);
  const expected = EVERY_TYPE.map(([k, v]): [string, GgufMetaValue] => {
    if (v.type === "f32") return [k, gv.f32(Math.fround(v.value))];
    if (v.type === "array" && v.itemType === "f32") return [k, gv.f32s(v.value.map(Math.fround))];
    return [k, v];
  });
  assert.deepEqual(typed, expected);
  // and writing the typed values again reproduces the file
  assert.ok(Buffer.concat(ggufChunks({ metadata: typed, tensors: [] })).equals(readFileSync(path)));
});

test("F32, F16 and BF16 tensors of 1 to 4 dims, aligned at 32 or at general.alignment", () => {
  const values = Float32Array.from({ length: 3 * 5 * 2 }, (_, i) => (i - 14) * 0.37 + (i % 3) * 1e-3);
  for (const alignment of [32, 64]) {
    const path = join(tmp, `tensors-${alignment}.gguf`);
    const metadata: Array<[string, GgufMetaValue]> = alignment === 32 ? [] : [["general.alignment", gv.u32(alignment)]];
    writeGguf(path, {
      metadata,
      tensors: [
        { name: "a", dims: [5], type: "F32", data: values.subarray(0, 5) }, // 20 bytes: the next offset needs padding
        { name: "b", dims: [5, 3, 2], type: "F16", data: values },
        { name: "c", dims: [2, 3, 1, 5], type: "BF16", data: values },
        { name: "d", dims: [3], type: "F32", data: Float32Array.of(-0, Infinity, NaN) },
        { name: "e", dims: [4], type: "F16", data: Float32Array.of(1, -2.5, 65504, 2 ** -24) },
        { name: "g", dims: [4], type: "BF16", data: Float32Array.of(1, -2.5, 3.140625, 2 ** -126) },
      ],
    });
    const f = readGguf(path);
    assert.equal(f.dataOffset % alignment, 0);
    for (const t of f.tensors.values()) assert.equal(t.offset % alignment, 0, `${t.name} offset ${t.offset}`);
    assert.deepEqual(f.tensors.get("b")!.dims, [5, 3, 2]);
    assert.equal(f.tensors.get("b")!.type, GgmlType.F16);
    assert.equal(f.tensors.get("c")!.type, GgmlType.BF16);
    assert.deepEqual(readGgufTensor(f, "a"), values.subarray(0, 5));
    const b = readGgufTensor(f, "b");
    const c = readGgufTensor(f, "c");
    for (let i = 0; i < values.length; i++) {
      const x = values[i]!;
      // nearest half / bfloat16: relative error at most half a unit in the last place (2^-11, 2^-8)
      assert.ok(Math.abs(b[i]! - x) <= Math.abs(x) * 2 ** -11, `F16 ${i}: ${b[i]} vs ${x}`);
      assert.ok(Math.abs(c[i]! - x) <= Math.abs(x) * 2 ** -8, `BF16 ${i}: ${c[i]} vs ${x}`);
    }
    // values the formats represent exactly survive unchanged (2^-24 is the smallest half subnormal)
    assert.deepEqual(readGgufTensor(f, "e"), Float32Array.of(1, -2.5, 65504, 2 ** -24));
    assert.deepEqual(readGgufTensor(f, "g"), Float32Array.of(1, -2.5, 3.140625, 2 ** -126));
    const d = readGgufTensor(f, "d");
    assert.ok(Object.is(d[0], -0));
    assert.equal(d[1], Infinity);
    assert.ok(Number.isNaN(d[2]));
  }
});

test("bad values, keys and tensors are refused before anything is written", () => {
  const bad = (metadata: Array<[string, GgufMetaValue]>, tensors: Parameters<typeof ggufChunks>[0]["tensors"], re: RegExp): void =>
    assert.throws(() => ggufChunks({ metadata, tensors }), re);
  bad([["k", gv.u8(256)]], [], /k: 256 is not a u8/);
  bad([["k", gv.i32(1.5)]], [], /is not a i32/);
  bad([["k", gv.u32(-1)]], [], /is not a u32/);
  bad([["k", { type: "u64", value: 5 as unknown as bigint }]], [], /not a u64/);
  bad([["k", gv.i32s([1, 2 ** 31])]], [], /is not a i32/);
  bad([["k", gv.u32(1)], ["k", gv.u32(2)]], [], /k appears twice/);
  bad([["", gv.u32(1)]], [], /bad metadata key/);
  bad([["general.alignment", gv.u32(12)]], [], /multiple of 8/);
  bad([["general.alignment", gv.u64(32n)]], [], /u32 multiple of 8/);
  const t = { name: "t", dims: [2, 2], type: "F32" as const, data: new Float32Array(3) };
  bad([], [t], /dims \[2, 2\] but 3 values/);
  bad([], [{ ...t, dims: [1, 1, 1, 1, 3], data: new Float32Array(3) }], /1 to 4 positive sizes/);
  bad([], [{ ...t, name: "x".repeat(64), data: new Float32Array(4) }], /1 to 63 bytes/);
  bad([], [{ ...t, data: new Float32Array(4) }, { ...t, data: new Float32Array(4) }], /t appears twice/);
});

test("writes are atomic: an existing file is replaced whole and no temporary file is left behind", () => {
  const dir = mkdtempSync(join(tmp, "atomic-"));
  const path = join(dir, "m.gguf");
  writeFileSync(path, "old contents");
  writeGguf(path, { metadata: [["x", gv.str("new")]], tensors: [] });
  assert.equal(readGguf(path).metadata.get("x"), "new");
  assert.deepEqual(readdirSync(dir), ["m.gguf"]);
});

test("readGgufMetadataTyped names the file when the header is cut short or is not GGUF", () => {
  const path = join(tmp, "cut.gguf");
  writeFileSync(path, readFileSync(storiesGguf).subarray(0, 2000));
  assert.throws(
    () => readGgufMetadataTyped(path),
    (e: unknown) => e instanceof TsdpoError && e.kind === "input" && e.message.startsWith(`${path}: GGUF header is corrupt or truncated`),
  );
  const notGguf = join(tmp, "not.gguf");
  writeFileSync(notGguf, Buffer.alloc(64));
  assert.throws(() => readGgufMetadataTyped(notGguf), /not a GGUF file/);
});
