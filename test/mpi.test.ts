// The MPI binding (src/backend/native/mpi.cc, built only where MPI is installed) and data-parallel training
// (src/train/distributed.ts). These run under `mpirun` and skip, saying why, where MPI or the binding is missing:
// a new user's `npm test` has neither; CI's MPI stage installs Open MPI, rebuilds the addon and runs them.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { mpiAddonPath } from "../src/train/distributed.js";

const here = dirname(fileURLToPath(import.meta.url));
const mpirun = spawnSync("mpirun", ["--version"], { encoding: "utf8" });
const why = mpirun.status !== 0 ? "mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)" : !existsSync(mpiAddonPath) ? `the addon has no MPI binding (${mpiAddonPath}; rebuild with MPI installed)` : null;
if (why && process.env.TSDPO_REQUIRE_MPI === "1") throw new Error(`TSDPO_REQUIRE_MPI=1 but ${why}`);
const skip = why ? `skipped: ${why}` : false;

/** `mpirun -np n node <script> ...args` with one thread per rank, as CI runs it. */
export function mpiRun(n: number, script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): ReturnType<typeof spawnSync> {
  return spawnSync("mpirun", ["--allow-run-as-root", "--oversubscribe", "-np", String(n), "-x", "TSDPO_THREADS=1", "-x", "TSDPO_BACKEND=native",
    ...Object.keys(env).flatMap((k) => ["-x", k]), process.execPath, script, ...args], { encoding: "utf8", env: { ...process.env, ...env, TSDPO_THREADS: "1" }, timeout: 300_000 });
}

for (const np of [2, 3]) {
  test(`orderedSum on ${np} ranks: every element summed in rank order, bit for bit, float32 and float64; allgather in rank order`, { skip }, () => {
    const r = mpiRun(np, join(here, "mpi", "sum-worker.js"));
    assert.equal(r.status, 0, String(r.stderr));
    const out = JSON.parse(String(r.stdout).trim().split("\n").at(-1)!);
    assert.equal(out.size, np);
    for (const c of out.checks) assert.ok(c.bitEqual, `${c.type} n=${c.n}: the binding's sum is addInRankOrder's, bit for bit`);
    // With 3 ranks another order of the same additions gives other bits somewhere, so the check above can see order
    // (with 2 it cannot: a + b = b + a exactly)
    if (np > 2) assert.ok(out.checks.some((c: { differsFromPairwise: boolean }) => c.differsFromPairwise), "another order gives other bits");
    assert.deepEqual(out.gathered, Array.from({ length: np }, (_, q) => [q, q * 10 + 1]).flat());
    assert.deepEqual(out.allRanksEqual, Array(np).fill(1));
  });
}
