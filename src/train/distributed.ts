// Data parallelism: the ranks of an `mpirun` job, or ranks emulated inside one process (emulate_world_size).
//
// The contract both share, which makes a run bit-reproducible and the emulation the exact reference of a real job:
//   - every rank sees the same shuffled order; an optimizer step's W·GA micro-batches are dealt out in order, rank r
//     taking micro-batches r·GA … r·GA + GA − 1 of the step;
//   - each rank sums its own micro-batches' gradients in order into a zeroed buffer;
//   - the ranks' sums are added in rank order, ((g0 + g1) + g2) + …, one float rounding per addition: the MPI
//     binding's orderedSum (src/backend/native/mpi.cc) on a real job, addInRankOrder below when emulated.
// Float addition is not associative, so this is not the bits of a one-process run with W·GA accumulation steps
// (whose sum is (((m0 + m1) + m2) + …) over all micro-batches); test/mpi.test.ts measures that difference.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TsdpoError } from "../errors.js";

export interface MpiBinding {
  init(): { rank: number; size: number; localRank: number; localSize: number; library: string };
  orderedSum(buf: Float32Array | Float64Array): void;
  allgather(x: Float64Array): Float64Array;
  barrier(): void;
  finalize(): void;
  abort(code: number): void;
}

export interface World {
  rank: number;
  size: number;
  /** The binding on a real job; null in one process (size 1, or emulated ranks). */
  mpi: MpiBinding | null;
}

export const SINGLE: World = { rank: 0, size: 1, mpi: null };

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const mpiAddonPath = join(packageRoot, "build", "Release", "tsdpo_mpi.node");

/** The world size a launcher announced in the environment (Open MPI, MPICH/Hydra, PMIx), or null: not under mpirun. */
export function launcherWorldSize(env: NodeJS.ProcessEnv = process.env): number | null {
  for (const key of ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"]) {
    const v = env[key];
    if (v !== undefined && /^\d+$/.test(v)) return Number(v);
  }
  return null;
}

/** Ranks on this machine (for threads per rank), from the launcher's environment; 1 when not launched by one. */
export function localRankCount(env: NodeJS.ProcessEnv = process.env): number {
  for (const key of ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"]) {
    const v = env[key];
    if (v !== undefined && /^\d+$/.test(v) && Number(v) >= 1) return Number(v);
  }
  return 1;
}

let world: World | null = null;

/**
 * The job this process belongs to. Not under mpirun: SINGLE. Under mpirun: initialises MPI through the binding, or
 * throws one line saying why it cannot (no binding built, or the js backend, whose runs could not be combined
 * with the native ranks' bits anyway).
 */
export function joinWorld(backend: string): World {
  if (world) return world;
  const launched = launcherWorldSize();
  if (launched === null) return (world = SINGLE);
  if (backend !== "native")
    throw new TsdpoError("unsupported", `tsdpo is running under mpirun (${launched} ranks) on the ${backend} backend; data-parallel runs need the native backend (backend: native)`);
  if (!existsSync(mpiAddonPath))
    throw new TsdpoError("unsupported", `tsdpo is running under mpirun (${launched} ranks) but its native addon was built without MPI (no ${mpiAddonPath}); install MPI (Debian: apt-get install libopenmpi-dev openmpi-bin) and rebuild with npm run build:native`);
  const mpi = createRequire(import.meta.url)(mpiAddonPath) as MpiBinding;
  const w = mpi.init();
  world = { rank: w.rank, size: w.size, mpi };
  process.once("exit", () => mpi.finalize());
  return world;
}

/** buf ← Σ_r buf_r in rank order, on every rank (a no-op in one process). */
export function orderedSum(w: World, buf: Float32Array | Float64Array): void {
  if (w.mpi && w.size > 1) w.mpi.orderedSum(buf);
}

/** Every rank's `x`, concatenated in rank order (just `x` in one process). */
export function allgather(w: World, x: Float64Array): Float64Array {
  return w.mpi && w.size > 1 ? w.mpi.allgather(x) : Float64Array.from(x);
}

/** acc ← acc + part, elementwise with one rounding per element: the emulated ranks' combination, in rank order. */
export function addInRankOrder(acc: Float32Array | Float64Array, part: Float32Array | Float64Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + part[i]!;
}

/**
 * Every rank's JSON-able value, in rank order: the lengths first, then each rank's UTF-8 bytes padded to the longest,
 * carried as doubles (one byte per double; these are a step's few metric records, not tensors).
 */
export function allgatherJson<T>(w: World, value: T): T[] {
  if (!w.mpi || w.size === 1) return [value];
  const bytes = Buffer.from(JSON.stringify(value), "utf8");
  const lengths = allgather(w, Float64Array.of(bytes.length));
  const longest = Math.max(...lengths);
  const mine = new Float64Array(longest);
  for (let i = 0; i < bytes.length; i++) mine[i] = bytes[i]!;
  const all = allgather(w, mine);
  return Array.from({ length: w.size }, (_, r) => {
    const part = Buffer.from(Array.from(all.subarray(r * longest, r * longest + lengths[r]!)));
    return JSON.parse(part.toString("utf8")) as T;
  });
}
