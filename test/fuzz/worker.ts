// One fuzz worker: runs cases [from, to) of one target and reports each to the harness (harness.ts), which
// terminates it when a case outlives the time limit. A case's input is rebuilt here from its key, so only numbers
// cross the thread boundary.
//
// While a case runs, the typed-array constructors, ArrayBuffer and Buffer.alloc* are wrapped to record the largest
// single allocation and the total: a reader must check the sizes a header declares against the file before it
// allocates by them.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { StepFailure, Steps, seedsOf, targetByName } from "./targets.js";
import { caseRng } from "./mutate.js";

export interface WorkerInput {
  target: string;
  seed: number;
  from: number;
  to: number;
  dir: string; // a scratch folder of this worker's own
}

export type CaseOutcome = "accepted" | "tsdpo" | "failure";

export type WorkerMessage =
  | { t: "start"; i: number }
  | { t: "done"; i: number; outcome: CaseOutcome; detail?: string; maxAlloc: number; totalAlloc: number; bytes: number }
  | { t: "end" };

export const caseKey = (target: string, seed: number, i: number): string => `${target}:${seed}:${i}`;

const allocation = { max: 0, total: 0 };
function note(bytes: unknown): void {
  const n = typeof bytes === "number" && Number.isFinite(bytes) ? bytes : 0;
  if (n > allocation.max) allocation.max = n;
  allocation.total += Math.max(0, n);
}

type Ctor = new (...args: unknown[]) => unknown;
const TYPED: [string, number][] = [
  ["Int8Array", 1], ["Uint8Array", 1], ["Uint8ClampedArray", 1], ["Int16Array", 2], ["Uint16Array", 2],
  ["Int32Array", 4], ["Uint32Array", 4], ["Float32Array", 4], ["Float64Array", 8], ["BigInt64Array", 8],
  ["BigUint64Array", 8],
];

/** Wraps the allocating constructors and functions; returns the function that restores them. */
function trackAllocations(): () => void {
  const g = globalThis as unknown as Record<string, unknown>;
  const saved: [Record<string, unknown>, string, unknown][] = [];
  const replace = (obj: Record<string, unknown>, key: string, value: unknown): void => {
    saved.push([obj, key, obj[key]]);
    obj[key] = value;
  };
  for (const [name, size] of TYPED) {
    const real = g[name] as Ctor;
    replace(g, name, new Proxy(real, {
      construct(target, args, newTarget) {
        // new X(length) allocates; new X(buffer, ...) is a view and new X(array) copies what exists already
        if (typeof args[0] === "number") note(args[0] * size);
        return Reflect.construct(target, args, newTarget);
      },
    }));
  }
  const realArrayBuffer = g["ArrayBuffer"] as Ctor;
  replace(g, "ArrayBuffer", new Proxy(realArrayBuffer, {
    construct(target, args, newTarget) {
      note(args[0]);
      return Reflect.construct(target, args, newTarget);
    },
  }));
  const B = Buffer as unknown as Record<string, unknown>;
  for (const fn of ["alloc", "allocUnsafe", "allocUnsafeSlow"]) {
    const real = B[fn] as (size: number, ...rest: unknown[]) => Buffer;
    replace(B, fn, (size: number, ...rest: unknown[]) => {
      note(size);
      return real.call(Buffer, size, ...rest);
    });
  }
  return () => {
    for (const [obj, key, value] of saved.reverse()) obj[key] = value;
  };
}

async function main(): Promise<void> {
  const input = workerData as WorkerInput;
  const target = targetByName(input.target);
  const seeds = seedsOf(target);
  const post = (m: WorkerMessage): void => parentPort!.postMessage(m);
  for (let i = input.from; i < input.to; i++) {
    const files = target.mutate(caseRng(caseKey(target.name, input.seed, i)), seeds);
    const dir = join(input.dir, `case-${i}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    let bytes = 0;
    for (const [name, b] of files) {
      writeFileSync(join(dir, name), b);
      bytes += b.length;
    }
    post({ t: "start", i });
    const steps = new Steps();
    allocation.max = 0;
    allocation.total = 0;
    const restore = trackAllocations();
    let outcome: CaseOutcome;
    let detail: string | undefined;
    try {
      await target.run(dir, files, steps);
      outcome = steps.tsdpoErrors > 0 ? "tsdpo" : "accepted";
    } catch (e) {
      outcome = "failure";
      detail = e instanceof StepFailure ? e.message + "\n" + stackOf(e.cause) : String(e);
    } finally {
      restore();
    }
    rmSync(dir, { recursive: true, force: true });
    post({ t: "done", i, outcome, detail, maxAlloc: allocation.max, totalAlloc: allocation.total, bytes });
  }
  post({ t: "end" });
}

function stackOf(e: unknown): string {
  const s = e instanceof Error ? (e.stack ?? "") : "";
  return s.split("\n").slice(1, 6).join("\n");
}

if (parentPort) void main();
