// What the llama-ref scripts share: llama.cpp's quantiser, the node-llama-cpp settings under which llama.cpp computes in float32
// throughout, opening llama.cpp with a pinned CPU backend variant, the conversion of its logits, and the fixture JSON format.

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const here = dirname(fileURLToPath(import.meta.url));
/** The libllama (and ggml) that node-llama-cpp ships for linux-x64. */
export const LIB_DIR = join(here, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64");
/** llama.cpp's headers: `git clone node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llsrc`, or $LLAMA_SRC. */
export const LLAMA_SRC = process.env.LLAMA_SRC ?? "/tmp/llsrc";
/** llama_ftype numbers for llama_model_quantize. */
export const FTYPE = { Q8_0: 7, Q4_K_M: 15, Q6_K: 18 };

/**
 * Compiles quantize.c (llama.cpp's own llama_model_quantize, one thread, no importance matrix) against LIB_DIR into
 * `workDir` and returns quantize(input, output, ftypeName), which fails through `fail` when llama.cpp does. ftypeName
 * "F32" writes every tensor as float32, dequantising quantised ones with ggml's own to_float (allow_requantize).
 */
export function buildQuantizer(workDir, fail) {
  const bin = join(workDir, "quantize");
  const cc = spawnSync("gcc", ["-O1", "-o", bin, join(here, "quantize.c"), `-I${LLAMA_SRC}/include`, `-I${LLAMA_SRC}/ggml/include`,
    join(LIB_DIR, "libllama.v0.5.0.so"), `-Wl,-rpath,${LIB_DIR}`], { encoding: "utf8" });
  if (cc.status !== 0) fail(`building quantize.c failed (LLAMA_SRC=${LLAMA_SRC}):\n${cc.stderr}`);
  return (input, output, ftypeName) => {
    const args = ftypeName === "F32" ? [input, output, "0", "requantize"] : [input, output, String(FTYPE[ftypeName])];
    const r = spawnSync(bin, args, { encoding: "utf8", env: { ...process.env, LD_LIBRARY_PATH: LIB_DIR } });
    if (r.status !== 0) fail(`llama_model_quantize ${input} -> ${ftypeName} failed:\n${r.stderr}`);
  };
}

/**
 * Context settings for exact float32 evaluations rather than approximations: F32 KV cache (the default F16 cache
 * rounds K and V), no flash attention (different summation order and F16 internals), one thread (fixed reduction
 * order), one sequence, and a batch of `size` tokens so every text fits one ubatch.
 */
export function float32ContextOptions(size) {
  return {
    contextSize: size,
    batchSize: size,
    sequences: 1,
    flashAttention: false,
    threads: { ideal: 1, min: 1 },
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  };
}
export const MODEL_OPTIONS = { gpuLayers: 0 };
/** llama.cpp on the CPU, never building from source (recorded in the fixtures). */
export const LLAMA_OPTIONS = { gpu: false, build: "never" };

/** A failure reporter that names the script and exits non-zero. */
export function failer(script) {
  return (msg) => {
    console.error(`${script}: ${msg}`);
    process.exit(1);
  };
}

/**
 * llama.cpp with LLAMA_OPTIONS; its debug log is kept in memory. `cpuBackend` is the file name of the CPU backend
 * variant that runs (libggml-cpu-haswell.so, -zen4.so, ...), read from the process's mappings.
 *
 * ggml loads the best-scoring CPU variant for the machine, and variants differ in their SIMD reductions, so logits
 * move in the last bits between machines (~1e-5 on stories260K between haswell and zen4). `cpuVariant` (e.g.
 * "haswell") pins one: before node-llama-cpp starts, the addon is loaded once and asked to load backends from a
 * temporary folder holding only a link to that variant, which registers it in ggml's (process-wide) backend registry;
 * node-llama-cpp then finds a CPU backend present and loads no other. The machine must support the variant.
 */
export async function openLlama({ cpuVariant } = {}) {
  if (cpuVariant !== undefined) pinCpuVariant(cpuVariant);
  const logLines = [];
  const llama = await getLlama({
    ...LLAMA_OPTIONS,
    logLevel: LlamaLogLevel.debug,
    logger: (_level, message) => logLines.push(String(message).trimEnd()),
  });
  const cpuBackend = loadedCpuBackend();
  if (cpuVariant !== undefined && cpuBackend !== `libggml-cpu-${cpuVariant}.so`)
    throw new Error(`asked for llama.cpp's ${cpuVariant} CPU backend, but ${cpuBackend} was loaded`);
  return { llama, logLines, cpuBackend };
}

function pinCpuVariant(variant) {
  const lib = join(LIB_DIR, `libggml-cpu-${variant}.so`);
  if (!existsSync(lib)) throw new Error(`no CPU backend variant ${variant} in ${LIB_DIR}`);
  const dir = mkdtempSync(join(tmpdir(), "llama-ref-cpu-"));
  try {
    symlinkSync(lib, join(dir, `libggml-cpu-${variant}.so`));
    createRequire(import.meta.url)(join(LIB_DIR, "llama-addon.node")).loadBackends(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The libggml-cpu-*.so this process has mapped (null if none, or not on Linux). */
function loadedCpuBackend() {
  let maps;
  try {
    maps = readFileSync("/proc/self/maps", "utf8");
  } catch {
    return null;
  }
  const libs = new Set(maps.split("\n").map((l) => /(libggml-cpu-[\w-]+\.so)$/.exec(l)?.[1]).filter(Boolean));
  return libs.size === 1 ? [...libs][0] : null;
}

/** Shortest decimal that parses back to the same float32, so the JSON is small yet exact in float32. */
export function f32(x, fail) {
  if (!Number.isFinite(x) || Math.fround(x) !== x) fail(`logit ${x} is not a finite float32`);
  for (let p = 6; p <= 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x; // unreachable: 9 significant digits always round-trip a float32
}

/** logits Map(token -> value) from node-llama-cpp -> dense array indexed by token id */
export function denseLogits(map, V, fail) {
  if (!(map instanceof Map) || map.size !== V) fail(`expected ${V} logits, got ${map?.size}`);
  const row = new Array(V);
  for (const [tok, v] of map) row[tok] = v;
  for (let i = 0; i < V; i++) if (row[i] === undefined) fail(`logit for token ${i} missing`);
  return row;
}

export function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** JSON with one line per numeric array, so rows stay readable and diffs stay local. */
export function toJson(v, indent = "") {
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === "number")) return `[${v.map((x) => JSON.stringify(x)).join(",")}]`;
    const inner = indent + "  ";
    return `[\n${v.map((x) => inner + toJson(x, inner)).join(",\n")}\n${indent}]`;
  }
  if (v !== null && typeof v === "object") {
    const inner = indent + "  ";
    const entries = Object.entries(v).map(([k, x]) => `${inner}${JSON.stringify(k)}: ${toJson(x, inner)}`);
    return `{\n${entries.join(",\n")}\n${indent}}`;
  }
  return JSON.stringify(v);
}
