#!/usr/bin/env node
// Writes test/fixtures/quant/: ggml's own quantised bytes and dequantised floats for every type src/quant/ggml.ts
// supports, made by the libggml-base.so that node-llama-cpp 3.22.1 ships (tools/llama-ref), through ggml_ref.c.
// Opt-in: the fixtures are committed and the tests need neither this script nor the native library.
//
//   (cd tools/llama-ref && npm install --omit=optional --ignore-scripts)   # once: the prebuilt llama.cpp libraries
//   node tools/ggml-ref/gen.mjs [--check]                                  # ~5 s; needs cc and git
//
// --check regenerates into memory and fails unless every committed file is byte-identical (the run is deterministic:
// seeded inputs, no dates).
//
// Environment: LLAMA_SRC = a llama.cpp checkout matching the library (default: clone node-llama-cpp's
// gitRelease.bundle into a temporary directory), CC (default cc).
//
// What it writes (all little-endian):
//   inputs.bin        float32[cases × N]: the input rows, N = 256, one per case in manifest.cases
//   <TYPE>.bin        for each type, at the byte ranges manifest.types[TYPE] gives:
//                       quant          ggml_quantize_chunk(type, rows of the type's cases, imatrix = NULL)
//                       dequant        float32: the type's to_float (dequantize_row_*) of those bytes
//                       randomBytes    seeded random bytes, whole blocks (so scales can be NaN, inf, subnormal)
//                       randomDequant  float32: to_float of the random bytes
//   manifest.json     the cases, ggml's id/block size/type size per type, the byte ranges, sha-256s of ggml's
//                     conversions over large samples (see `conversions`), and provenance.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const outDir = join(repo, "test", "fixtures", "quant");
const llamaRef = join(repo, "tools", "llama-ref", "node_modules");
const libDir = join(llamaRef, "@node-llama-cpp", "linux-x64", "bins", "linux-x64");
const bundle = join(llamaRef, "node-llama-cpp", "llama", "gitRelease.bundle");
const check = process.argv.includes("--check");

const N = 256; // elements per case row: one K-quant super-block, eight 32-element blocks
const TYPES = { F16: 1, BF16: 30, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14 };
const RANDOM_BLOCKS = { F16: 512, BF16: 512, Q4_0: 16, Q4_1: 16, Q5_0: 16, Q5_1: 16, Q8_0: 16, Q4_K: 4, Q5_K: 4, Q6_K: 4 };

function fail(msg) {
  process.stderr.write(`ggml-ref: ${msg}\n`);
  process.exit(1);
}
function run(cmd, args, input, what) {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 28 });
  if (r.error) fail(`${what}: could not run ${cmd} (${r.error.message})`);
  if (r.status !== 0) fail(`${what}: ${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr.toString().trim()}`);
  return r.stdout;
}
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");
const bytesOf = (ta) => Buffer.from(ta.buffer, ta.byteOffset, ta.byteLength);

// ---- the library and its headers ----
if (!existsSync(join(libDir, "libggml-base.so"))) {
  fail(`${join(libDir, "libggml-base.so")} is missing: run \`npm install --omit=optional --ignore-scripts\` in tools/llama-ref`);
}
const work = mkdtempSync(join(tmpdir(), "tsdpo-ggml-ref-"));
let src = process.env.LLAMA_SRC;
if (!src) {
  src = join(work, "llama.cpp");
  run("git", ["clone", "-q", bundle, src], undefined, "cloning node-llama-cpp's llama.cpp bundle");
}
const srcCommit = run("git", ["-C", src, "rev-parse", "HEAD"], undefined, "reading the llama.cpp commit").toString().trim();
const exe = join(work, "ggml_ref");
run(process.env.CC || "cc", ["-O2", "-std=c11", "-Wall", "-Wextra", `-I${join(src, "ggml", "include")}`, join(here, "ggml_ref.c"),
  "-o", exe, `-L${libDir}`, "-l:libggml-base.so", `-Wl,-rpath,${libDir}`], undefined, "compiling ggml_ref.c");
const ggml = (args, input, what) => run(exe, args, input, what);

// ---- inputs ----
// splitmix32: a seeded stream, so regenerating gives the same files.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}
const r = rng(20240614);
const uni = (a, b) => a + (b - a) * r();
const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
const row = (f) => Float32Array.from({ length: N }, (_, i) => f(i));
const fromBits = (bits) => new Float32Array(Uint32Array.from(bits).buffer);

// Each case is one row of N floats. `floatOnly` rows (NaN, inf) go to F16 and BF16 only: for the block types ggml's
// result on a NaN input depends on NaN payload bits that JavaScript does not promise to keep.
const cases = [
  { name: "gauss", x: row(() => gauss()) },
  { name: "weights-0.02", x: row(() => 0.02 * gauss()) },
  { name: "uniform", x: row(() => uni(-1, 1)) },
  { name: "zeros", x: row(() => 0) },
  { name: "one-huge", x: row((i) => (i === 77 ? 1000 : 0.02 * gauss())) },
  { name: "negative-only", x: row(() => -Math.abs(0.5 * gauss())) },
  { name: "positive-only", x: row(() => Math.abs(0.5 * gauss()) + 0.1) },
  { name: "constant-positive", x: row(() => 0.75) },
  { name: "constant-negative", x: row(() => -0.3) },
  {
    // Per 32-element block a magnitude around fp16's limits: scales that round to the largest half, overflow it
    // (d = inf), or fall into its subnormals or to zero; exact limits at the first elements of the first block.
    name: "fp16-limits",
    x: (() => {
      const mags = [65504, 65520 * 8, 1e7, 1e-4, 1e-6, 1e-8, 2 ** -24, 1];
      const x = row((i) => uni(-1, 1) * mags[i >> 5]);
      x.set([65504, -65504, 65519.99, 65520, -65536, 2 ** -14, 2 ** -24, -(2 ** -25), 3 * 2 ** -26, 6e4], 0);
      return x;
    })(),
  },
  {
    // float32 subnormals and the smallest normals: 1/d overflows to inf in the 32-element formats
    name: "subnormal",
    x: (() => {
      const mags = [1e-39, 1e-45, 1.2e-38, 3e-38, 1e-40, 1e-30, 1e-20, 1e-38];
      const x = row((i) => uni(-1, 1) * mags[i >> 5]);
      x[3] = 1.401298464324817e-45;
      x[4] = -1.1754942e-38;
      return x;
    })(),
  },
  {
    // Near FLT_MAX: max − min and x² overflow to inf inside the quantisers
    name: "huge",
    x: (() => {
      const x = row(() => uni(-1, 1) * 1e30);
      x[40] = 3.4e38;
      x[41] = -3.4e38;
      x[130] = 1e20;
      return x;
    })(),
  },
  {
    name: "sparse",
    x: row((i) => ((i >> 5) % 3 === 1 ? 0 : r() < 0.1 ? gauss() : 0)),
  },
  { name: "integers", x: row(() => Math.floor(uni(-8, 8))) }, // ties in x/d for the 4-bit formats
  { name: "halves", x: row(() => Math.floor(uni(-8, 8)) / 2) },
  { name: "ramp", x: row((i) => -1 + (2 * i) / (N - 1)) },
  { name: "mixed-scales", x: row((i) => 10 ** (((i >> 5) * 7) % 9 - 6) * gauss()) }, // 1e-6 … 1e2 per block
  {
    // one 16-element group 10⁴× larger than the rest: the small groups' 8-bit (Q6_K) or 6-bit (Q4_K, Q5_K)
    // scales round to zero, the path that keeps the first-pass quants
    name: "outlier-group",
    x: row((i) => (i >> 4 === 5 ? 100 * gauss() : 0.01 * gauss())),
  },
  { name: "gauss-2", x: row(() => 3 * gauss() + 0.5) },
  {
    name: "specials",
    floatOnly: true,
    x: (() => {
      const x = row(() => gauss() * 1e4);
      const bits = [
        0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fc12345, 0x7fbfffff, // NaNs: quiet, signalling, payloads
        0x7f800000, 0xff800000, 0x00000000, 0x80000000, 0x7f7fffff, 0xff7fffff, // ±inf, ±0, ±FLT_MAX
        0x00000001, 0x807fffff, 0x00800000, 0x477fe000, 0x477fefff, 0x477ff000, // subnormals, 65504, < 65520, 65520
        0x477fffff, 0x47800000, 0x38800000, 0x387fffff, 0x33800000, 0x33000000, // 2^-14 ± , 2^-24, 2^-25 (tie → 0)
        0x33000001, 0x33c00000, 0x3f808000, 0x3f818000, 0x3f80ffff, 0xbf807fff, // 2^-25⁺, 1.5·2^-24 (tie), bf16 ties
      ];
      x.set(fromBits(bits), 0);
      return x;
    })(),
  },
];
for (const c of cases) if (c.x.length !== N) fail(`case ${c.name} has ${c.x.length} elements, not ${N}`);

// ---- per type: ggml's bytes and floats ----
const files = new Map(); // name → Buffer
const info = ggml(["info", ...Object.values(TYPES).map(String)], undefined, "ggml type info").toString().trim().split("\n");
const manifestTypes = {};
for (const [name, id] of Object.entries(TYPES)) {
  const [gid, gname, blck, size] = info.find((l) => l.startsWith(`${id} `)).split(" ");
  const ggmlInfo = { id: Number(gid), name: gname, blockElems: Number(blck), blockBytes: Number(size) };
  const isFloat = name === "F16" || name === "BF16";
  const used = cases.map((c, i) => [c, i]).filter(([c]) => isFloat || !c.floatOnly).map(([, i]) => i);
  const input = Buffer.concat(used.map((i) => bytesOf(cases[i].x)));
  const quant = ggml(["quant", String(id), String(N)], input, `quantising ${name}`);
  const dequant = ggml(["dequant", String(id), String(N)], quant, `dequantising ${name}`);
  const rb = rng(1000 + id);
  const randomBytes = Buffer.from(Uint8Array.from({ length: RANDOM_BLOCKS[name] * ggmlInfo.blockBytes }, () => Math.floor(rb() * 256)));
  const randomN = RANDOM_BLOCKS[name] * ggmlInfo.blockElems;
  const randomDequant = ggml(["dequant", String(id), String(randomN)], randomBytes, `dequantising random ${name} blocks`);
  const parts = { quant, dequant, randomBytes, randomDequant };
  const ranges = {};
  let off = 0;
  for (const [k, b] of Object.entries(parts)) {
    ranges[k] = [off, b.length];
    off += b.length;
  }
  files.set(`${name}.bin`, Buffer.concat(Object.values(parts)));
  manifestTypes[name] = { ggml: ggmlInfo, file: `${name}.bin`, cases: used, randomBlocks: RANDOM_BLOCKS[name], ...ranges };
}
files.set("inputs.bin", Buffer.concat(cases.map((c) => bytesOf(c.x))));

// ---- F16 and BF16 conversions over large samples: only sha-256s are stored (the outputs would be megabytes) ----
// The test rebuilds each input sample by the same rule, checks its sha-256 (so a change of rule is caught as such)
// and then compares the hash of its own outputs with ggml's.
function halfValue(h) { // positive half bits 0..0x7c00, 0x7c00 read as 65536 (the midpoint rule needs it)
  const e = h >> 10, m = h & 0x3ff;
  return e === 0 ? m * 2 ** -24 : 2 ** (e - 15) * (1 + m / 1024);
}
const samples = {
  // every 4093rd float32 bit pattern: all exponents, signs, NaNs and infinities
  f32Stride: Uint32Array.from({ length: 1 << 20 }, (_, i) => i * 4093),
  // each midpoint between neighbouring positive halves (the round-to-even ties) and the floats either side, ± sign
  f16Ties: (() => {
    const out = [];
    for (let h = 0; h < 0x7c00; h++) {
      const mid = new Uint32Array(new Float32Array([(halfValue(h) + halfValue(h + 1)) / 2]).buffer)[0];
      for (const b of [mid - 1, mid, mid + 1]) out.push(b, (b | 0x80000000) >>> 0);
    }
    return Uint32Array.from(out);
  })(),
  // bf16 ties and their neighbours: every top half with low halves 0x7fff, 0x8000, 0x8001
  bf16Ties: Uint32Array.from({ length: 3 * 65536 }, (_, i) => (((i / 3) | 0) * 65536 + [0x7fff, 0x8000, 0x8001][i % 3]) >>> 0),
};
const allHalves = Buffer.from(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer);
const conversions = {};
for (const [sname, s] of Object.entries(samples)) {
  const inBytes = bytesOf(s);
  for (const t of ["F16", "BF16"]) {
    if (sname === "f16Ties" && t === "BF16") continue;
    if (sname === "bf16Ties" && t === "F16") continue;
    const out = ggml(["quant", String(TYPES[t]), String(s.length)], inBytes, `${t} of ${sname}`);
    conversions[`${sname}->${t}`] = { count: s.length, inputSha256: sha256(inBytes), outputSha256: sha256(out) };
  }
}
for (const t of ["F16", "BF16"]) {
  const out = ggml(["dequant", String(TYPES[t]), "65536"], allHalves, `every ${t} to float32`);
  conversions[`all-${t}->F32`] = { count: 65536, outputSha256: sha256(out) };
}

// ---- manifest ----
const pkg = (p) => JSON.parse(readFileSync(join(llamaRef, p, "package.json"), "utf8"));
const lib = readFileSync(join(libDir, "libggml-base.so"));
const manifest = {
  about: "ggml's quantised bytes and dequantised floats, made by tools/ggml-ref/gen.mjs; see that file for the layout",
  rowElems: N,
  cases: cases.map((c) => (c.floatOnly ? { name: c.name, floatOnly: true } : { name: c.name })),
  types: manifestTypes,
  conversions,
  provenance: {
    generator: "tools/ggml-ref/gen.mjs + ggml_ref.c",
    nodeLlamaCpp: pkg("node-llama-cpp").version,
    binaryPackage: `@node-llama-cpp/linux-x64@${pkg("@node-llama-cpp/linux-x64").version}`,
    llamaCppRelease: JSON.parse(readFileSync(join(llamaRef, "node-llama-cpp", "llama", "llama.cpp.info.json"), "utf8")),
    llamaCppSourceCommit: srcCommit,
    libggmlBaseSha256: sha256(lib),
    functions: "ggml_quantize_chunk(type, …, imatrix = NULL) → quantize_row_*_ref; ggml_get_type_traits(type)->to_float",
  },
};
// Indented, with number arrays and small objects on one line each so the file reads (and diffs) well.
const manifestText = JSON.stringify(manifest, null, 1)
  .replace(/\[[\d,\s]*\]/g, (m) => m.replace(/\s+/g, ""))
  .replace(/\{[^{}\[\]]*\}/g, (m) => (m.length < 120 ? m.replace(/\s*\n\s*/g, " ") : m));
files.set("manifest.json", Buffer.from(manifestText + "\n"));
rmSync(work, { recursive: true, force: true });

let total = 0;
let stale = 0;
for (const [name, buf] of files) {
  total += buf.length;
  const path = join(outDir, name);
  if (check) {
    if (!existsSync(path) || !readFileSync(path).equals(buf)) {
      process.stderr.write(`ggml-ref: ${path} differs from a fresh run\n`);
      stale++;
    }
  } else {
    writeFileSync(path, buf);
  }
  process.stdout.write(`${check ? "checked" : "wrote"} ${name} ${buf.length} bytes\n`);
}
process.stdout.write(`total ${total} bytes\n`);
if (stale) process.exit(1);
