// The fuzz harness: runs N seeded cases of a target in a worker thread (worker.ts) and judges each.
//
// A case fails when an entry point throws anything but a TsdpoError (worker.ts), when it runs longer than the time
// limit (a synchronous hang cannot be interrupted in-process, so the harness terminates the worker and starts a new
// one at the next case), when the worker dies (out of memory, a native crash), or when its largest allocation or
// its allocations in all exceed max(64 MiB, 16 x the input's size). A failing case is reproduced from its key
// (target, seed, index) with failingInput.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { caseRng } from "./mutate.js";
import { type CaseFiles, seedsOf, targetByName } from "./targets.js";
import { type WorkerInput, type WorkerMessage, caseKey } from "./worker.js";

export interface FuzzFailure {
  target: string;
  index: number;
  key: string;
  kind: "crash" | "timeout" | "allocation" | "worker died";
  detail: string;
}

export interface TargetStats {
  target: string;
  cases: number;
  tsdpoErrors: number;
  accepted: number;
  failures: FuzzFailure[];
  seconds: number;
  /** The largest single allocation of any case, in bytes. */
  maxAllocation: number;
}

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** First case index (a slice of a longer run reproduces the same cases). Default 0. */
  from?: number;
  timeoutMs?: number;
  /** Heap limit of a worker; a case that exceeds it kills the worker and fails. */
  heapMb?: number;
  onProgress?: (done: number, stats: TargetStats) => void;
}

export const allocationLimit = (bytes: number): number => Math.max(64 * 2 ** 20, 16 * bytes);

export async function fuzzTarget(name: string, opts: FuzzOptions): Promise<TargetStats> {
  const from = opts.from ?? 0;
  const to = from + opts.cases;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const stats: TargetStats = { target: name, cases: 0, tsdpoErrors: 0, accepted: 0, failures: [], seconds: 0, maxAllocation: 0 };
  const scratch = mkdtempSync(join(tmpdir(), `tsdpo-fuzz-${name.replace(/\W/g, "")}-`));
  const t0 = performance.now();
  const fail = (index: number, kind: FuzzFailure["kind"], detail: string): void => {
    stats.failures.push({ target: name, index, key: caseKey(name, opts.seed, index), kind, detail });
  };
  try {
    let next = from;
    while (next < to) {
      // One worker runs the rest of the range; it is replaced after a case that kills or hangs it.
      next = await new Promise<number>((resolve, reject) => {
        const input: WorkerInput = { target: name, seed: opts.seed, from: next, to, dir: scratch };
        const worker = new Worker(new URL("./worker.js", import.meta.url), {
          workerData: input,
          resourceLimits: { maxOldGenerationSizeMb: opts.heapMb ?? 1024 },
          stdout: true,
          stderr: true,
        });
        worker.stdout.resume(); // a library's console output is not the fuzzer's business
        worker.stderr.resume();
        let current = -1;
        let resumeAt = next; // after the last case this worker finished
        let timer: NodeJS.Timeout | undefined;
        let settled = false;
        const finish = (resume: number): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          void worker.terminate();
          resolve(resume);
        };
        const account = (): void => {
          stats.cases++;
          opts.onProgress?.(stats.cases, stats);
        };
        worker.on("message", (m: WorkerMessage) => {
          if (m.t === "start") {
            current = m.i;
            timer = setTimeout(() => {
              fail(current, "timeout", `no result after ${timeoutMs} ms`);
              account();
              finish(current + 1);
            }, timeoutMs);
          } else if (m.t === "done") {
            clearTimeout(timer);
            current = -1;
            resumeAt = m.i + 1;
            stats.maxAllocation = Math.max(stats.maxAllocation, m.maxAlloc);
            const limit = allocationLimit(m.bytes);
            if (m.outcome === "failure") fail(m.i, "crash", m.detail ?? "");
            else if (m.maxAlloc > limit || m.totalAlloc > limit)
              fail(m.i, "allocation", `largest allocation ${m.maxAlloc} bytes, ${m.totalAlloc} in all, for ${m.bytes} bytes of input (limit ${limit})`);
            else if (m.outcome === "tsdpo") stats.tsdpoErrors++;
            else stats.accepted++;
            account();
          } else finish(to);
        });
        const died = (why: string): void => {
          if (settled) return;
          if (current >= 0) {
            fail(current, "worker died", why);
            account();
            finish(current + 1);
          } else if (resumeAt > next) finish(resumeAt); // died between cases: go on from there
          else {
            settled = true;
            reject(new Error(`the ${name} fuzz worker died before its first case: ${why}`));
          }
        };
        worker.on("error", (e) => died(`${e.name}: ${e.message}`));
        worker.on("exit", (code) => died(`exit code ${code}`));
      });
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  stats.seconds = (performance.now() - t0) / 1000;
  return stats;
}

/** The input of case `index` (to save a failure as a fixture). */
export function failingInput(target: string, seed: number, index: number): CaseFiles {
  const t = targetByName(target);
  return t.mutate(caseRng(caseKey(target, seed, index)), seedsOf(t));
}
