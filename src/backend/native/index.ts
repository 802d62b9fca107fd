// The native CPU backend: a C++ N-API addon (addon.cc, kernels.cc, gemm.cc, parallel.cc; built by
// scripts/build-native.js during `npm ci`, with nothing but a C++ compiler) with the kernels of contract.ts on
// Float32Array, matrix products through tsdpo's own GEMM, one thread pool (OpenMP, or std::threads where the compiler
// has no OpenMP) and runtime-dispatched AVX2 / AVX-512 loops. Loaded lazily, once: a missing or broken build is a
// reason string for select.ts to report, never an exception at import time.
//
// Environment, read when the addon loads:
//   TSDPO_THREADS=n           threads for the kernels and the GEMM (default: every core this process may use)
//   TSDPO_SIMD=avx2|portable  a narrower instruction set than the CPU's best for the vector loops and the GEMM's
//                             micro-kernels (debugging, and the tests of every copy)
//   TSDPO_NATIVE=0            do not load the addon (auto then means js)
//   TSDPO_BACKEND=js|native|auto   the default backend when no --backend is given (see select.ts)
//   OMP_WAIT_POLICY, GOMP_SPINCOUNT   respected when set. When neither is, idle OpenMP threads sleep between kernels
//                             instead of spinning: on a machine whose cores are shared with other processes, a
//                             spinning thread waits out whole scheduler slices for a descheduled one (measured: a
//                             stories260K step 30× slower at load 4 on 2 cores). Set OMP_WAIT_POLICY=active on a
//                             dedicated machine to trade that for a few µs less per kernel call.

import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { configError } from "../../errors.js";
import { localRankCount } from "../../train/distributed.js";
import type { Backend } from "../contract.js";
import { dequantizeRows } from "../js/kernels.js";

export type SimdLevel = "avx512" | "avx2" | "portable";
export const SIMD_LEVELS: readonly SimdLevel[] = ["avx512", "avx2", "portable"];

export interface NativeInfo {
  threads: number;
  threadPool: "openmp" | "std::thread"; // how the addon was built: with OpenMP, or with its own pool
  simd: SimdLevel; // the instruction set of the vector loops and GEMM micro-kernels in use
  gemm: string; // the GEMM's micro-kernel and blocking, e.g. "avx512 12x32, kc 256, mc 504 (L2 1024 KiB)"
}

/** Row-major C := alpha·op(A)·op(B) + beta·C (src/backend/native/gemm.h), for the GEMM's tests and benchmarks. */
export type Sgemm = (transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: Float32Array,
  lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number) => void;

interface Addon extends Omit<Backend, "name" | "dequantizeRows"> {
  /** Present once the addon has its own dequantisation (quant.inc). */
  dequantizeRows?: Backend["dequantizeRows"];
  setThreads(n: number): number;
  setSimd(level: string): boolean;
  info(): NativeInfo;
  fmaPeakGflops(ms: number): number;
  sgemm: Sgemm;
}

export type NativeLoad =
  | {
      ok: true;
      backend: Backend;
      info: () => NativeInfo;
      setThreads: (n: number) => number;
      /** Selects the vector loops' instruction set; false (and no change) when this CPU cannot run it. */
      setSimd: (level: SimdLevel) => boolean;
      /**
       * This machine's float32 FMA peak in GFLOP/s, measured now: every thread runs a register-only FMA loop of the
       * selected instruction set for about `ms` milliseconds (at most 10 s). The bench compares GEMM against it.
       */
      fmaPeakGflops: (ms: number) => number;
      /** The addon's GEMM on its own. */
      sgemm: Sgemm;
    }
  | { ok: false; reason: string };

// dist/src/backend/native/index.js → the repository (or installed package) root, where node-gyp writes build/.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
export const addonPath = join(packageRoot, "build", "Release", "tsdpo_native.node");

let loaded: NativeLoad | null = null;

/** Loads the addon on first use; later calls return the same result. */
export function loadNative(): NativeLoad {
  loaded ??= load();
  return loaded;
}

function threadsFromEnv(): number {
  const s = process.env.TSDPO_THREADS;
  // Under mpirun, the ranks on one machine share its cores rather than each taking them all.
  if (s === undefined || s === "") return Math.max(1, Math.floor(availableParallelism() / localRankCount()));
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 1024)
    throw configError(`environment variable TSDPO_THREADS=${s}: expected a whole number of threads from 1 to 1024`);
  return n;
}

function load(): NativeLoad {
  if (process.env.TSDPO_NATIVE === "0") return { ok: false, reason: "disabled by TSDPO_NATIVE=0" };
  const threads = threadsFromEnv();
  if (!existsSync(addonPath)) {
    const status = join(packageRoot, "build", "native-unavailable.txt");
    const why = existsSync(status) ? readFileSync(status, "utf8").trim() : "it was not built (run npm run build:native)";
    return { ok: false, reason: why };
  }
  // libgomp reads these when it loads, with the addon; child processes get the user's values back.
  const env = process.env;
  const overrides: Record<string, string | undefined> = {};
  if (env.OMP_WAIT_POLICY === undefined && env.GOMP_SPINCOUNT === undefined) overrides.OMP_WAIT_POLICY = "passive";
  const saved = Object.fromEntries(Object.keys(overrides).map((k) => [k, env[k]]));
  const setEnv = (vals: Record<string, string | undefined>): void => {
    for (const [k, v] of Object.entries(vals)) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
  };
  setEnv(overrides);
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(addonPath) as Addon;
  } catch (err) {
    const msg = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    return { ok: false, reason: `${addonPath} failed to load (${msg}); rebuild it with npm run build:native` };
  } finally {
    setEnv(saved);
  }
  addon.setThreads(threads);
  const simd = process.env.TSDPO_SIMD;
  if (simd && !addon.setSimd(simd))
    throw configError(`environment variable TSDPO_SIMD=${simd}: expected ${SIMD_LEVELS.join(", ")}, and one this CPU supports`);
  // The addon's functions take the contract's arguments in the contract's order, so they are the backend as is.
  const backend: Backend = {
    name: "native",
    embeddingForward: addon.embeddingForward, embeddingBackward: addon.embeddingBackward,
    rmsnormForward: addon.rmsnormForward, rmsnormBackward: addon.rmsnormBackward,
    layernormForward: addon.layernormForward, layernormBackward: addon.layernormBackward,
    matmulForward: addon.matmulForward, matmulBackward: addon.matmulBackward,
    ropeForward: addon.ropeForward, ropeBackward: addon.ropeBackward,
    attentionForward: addon.attentionForward, attentionBackward: addon.attentionBackward,
    attentionDecode: addon.attentionDecode,
    swigluForward: addon.swigluForward, swigluBackward: addon.swigluBackward,
    gegluForward: addon.gegluForward, gegluBackward: addon.gegluBackward,
    geluForward: addon.geluForward, geluBackward: addon.geluBackward,
    addForward: addon.addForward, accumulate: addon.accumulate, scale: addon.scale, sumSquares: addon.sumSquares,
    lmHeadLogprobForward: addon.lmHeadLogprobForward, lmHeadLogprobBackward: addon.lmHeadLogprobBackward,
    adamwStep: addon.adamwStep,
    dequantizeRows: addon.dequantizeRows ?? dequantizeRows,
    ...(addon.matmulForwardQuant && addon.matmulBackwardQuant
      ? { matmulForwardQuant: addon.matmulForwardQuant, matmulBackwardQuant: addon.matmulBackwardQuant }
      : {}),
    ...(addon.lmHeadLogprobForwardQuant && addon.lmHeadLogprobBackwardQuant
      ? { lmHeadLogprobForwardQuant: addon.lmHeadLogprobForwardQuant, lmHeadLogprobBackwardQuant: addon.lmHeadLogprobBackwardQuant }
      : {}),
  };
  return {
    ok: true, backend, info: () => addon.info(), setThreads: (n) => addon.setThreads(n), setSimd: (l) => addon.setSimd(l),
    fmaPeakGflops: (ms) => addon.fmaPeakGflops(ms), sgemm: addon.sgemm,
  };
}
