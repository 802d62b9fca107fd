// The MPI binding (src/backend/native/mpi.cc, built only where MPI is installed) and data-parallel training
// (src/train/distributed.ts). These run under `mpirun` and skip, saying why, where MPI or the binding is missing:
// a new user's `npm test` has neither; CI's MPI stage installs Open MPI, rebuilds the addon and runs them.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { mpiAddonPath } from "../src/train/distributed.js";

const here = dirname(fileURLToPath(import.meta.url));
const mpirun = spawnSync("mpirun", ["--version"], { encoding: "utf8" });
const why = mpirun.status !== 0 ? "mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)" : !existsSync(mpiAddonPath) ? `the addon has no MPI binding (${mpiAddonPath}; rebuild with MPI installed)` : null;
if (why && process.env.TSDPO_REQUIRE_MPI === "1") throw new Error(`TSDPO_REQUIRE_MPI=1 but ${why}`);
const skip = why ? `skipped: ${why}` : false;
// The training runs below take minutes on 2 cores: CI's MPI stage runs them (TSDPO_MPI_TESTS=1), a plain npm test
// on a machine that happens to have MPI runs only the binding's checks.
const skipTraining = skip || (process.env.TSDPO_MPI_TESTS === "1" ? false : "skipped: the data-parallel training runs need TSDPO_MPI_TESTS=1 (CI's MPI stage)");

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

// ---------------------------------------------------------------------------------------------------------------
// Data-parallel training on the shipped config, cut short: 2 ranks against emulate_world_size 2 in one process.

const cli = join(here, "..", "src", "cli", "main.js");
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-mpi-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const base = ["--max_steps", "4", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--learning_rate", "5e-4",
  "--eval_size", "16", "--eval_steps", "2", "--logging_steps", "1", "--save_steps", "2", "--max_length", "64", "--backend", "native", "--quiet"];

/** `tsdpo train` on `np` ranks (null: one plain process with 2 threads). */
function trainRun(np: number | null, out: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): void {
  const args = ["train", ...base, "--output_dir", out, ...extra];
  const r = np === null
    ? spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: { ...process.env, ...env, TSDPO_THREADS: "2" }, timeout: 300_000 })
    : mpiRun(np, cli, args, env);
  assert.equal(r.status, 0, `${np ?? "plain"} ${extra.join(" ")}: ${String(r.stderr)}`);
}

/** metrics.jsonl without the wall-clock field. */
const metricsOf = (dir: string): string => readFileSync(join(dir, "metrics.jsonl"), "utf8").replace(/,"tokens_per_second":[^,}]*/g, "");

/** A safetensors file's float32 tensors by name. */
function tensors(path: string): Map<string, Float32Array> {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const out = new Map<string, Float32Array>();
  for (const [k, v] of Object.entries(header)) {
    if (k === "__metadata__" || v.dtype !== "F32") continue;
    const bytes = b.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]);
    out.set(k, new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)));
  }
  return out;
}

function maxWeightDiff(a: string, b: string): number {
  const ta = tensors(a), tb = tensors(b);
  let m = 0;
  for (const [k, x] of ta) {
    const y = tb.get(k)!;
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  }
  return m;
}

// Measured on this config (4 steps at 5e-4): the plain run with 4 accumulation steps ends within 1.2e-7 of the
// 2-rank grouping (full), so 1e-5 leaves room for other machines' kernels while still catching a lost or doubled rank.
const PLAIN_TOLERANCE = 1e-5;

for (const variant of [
  { name: "full fine-tuning", extra: [], file: "model.safetensors" },
  { name: "LoRA", extra: ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0", "--learning_rate", "2e-3"], file: "adapter_model.safetensors" },
  { name: "precomputed reference log-probs", extra: ["--precompute_ref_log_probs"], file: "model.safetensors" },
]) {
  test(`2 ranks = emulate_world_size 2, bit for bit (${variant.name}): final weights and metrics.jsonl; the plain run with accumulation doubled within ${PLAIN_TOLERANCE}`, { skip: skipTraining }, () => {
    const dir = join(tmp, variant.name.replace(/\W+/g, "-"));
    const caches = { mpi: join(dir, "cache-mpi"), emu: join(dir, "cache-emu"), plain: join(dir, "cache-plain") };
    trainRun(2, join(dir, "mpi"), variant.extra, { TSDPO_CACHE_DIR: caches.mpi });
    trainRun(null, join(dir, "emu"), [...variant.extra, "--emulate_world_size", "2"], { TSDPO_CACHE_DIR: caches.emu });
    trainRun(null, join(dir, "plain"), [...variant.extra, "--gradient_accumulation_steps", "4"], { TSDPO_CACHE_DIR: caches.plain });
    const w = (run: string): string => join(dir, run, "final", variant.file);
    assert.ok(readFileSync(w("mpi")).equals(readFileSync(w("emu"))), "final weights bit-equal");
    assert.equal(metricsOf(join(dir, "mpi")), metricsOf(join(dir, "emu")), "metrics.jsonl equal (global losses, rewards, accuracies; sharded eval)");
    assert.ok(metricsOf(join(dir, "mpi")).includes("eval_loss"));
    const d = maxWeightDiff(w("plain"), w("emu"));
    assert.ok(d <= PLAIN_TOLERANCE, `plain run vs 2 ranks: max |Δw| ${d}`);
    if (variant.extra.includes("--precompute_ref_log_probs")) {
      const files = (c: string): string[] => readdirSync(c).filter((f) => f.startsWith("ref-logps-")).sort();
      assert.equal(files(caches.mpi).length, 2, "train and eval caches, written by rank 0");
      assert.deepEqual(files(caches.mpi), files(caches.plain));
      for (const f of files(caches.mpi)) assert.equal(readFileSync(join(caches.mpi, f), "utf8"), readFileSync(join(caches.plain, f), "utf8"), `${f}: sharded = one process`);
    }
  });
}

test("kill -9 of one rank: the job stops naming the rank; resuming on 2 ranks (and a 1-rank job on 1) ends with the uninterrupted run's weights", { skip: skipTraining }, async () => {
  for (const np of [2, 1]) {
    const dir = join(tmp, `kill-${np}`);
    const extra = ["--max_steps", "12", "--save_steps", "2"];
    trainRun(np, join(dir, "whole"), extra);
    const out = join(dir, "killed");
    const child = spawn("mpirun", ["--allow-run-as-root", "--oversubscribe", "-np", String(np), "-x", "TSDPO_THREADS=1", "-x", "TSDPO_BACKEND=native",
      process.execPath, cli, "train", ...base, "--output_dir", out, ...extra], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TSDPO_THREADS: "1" } });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const ckpts = join(out, "checkpoints");
    while (!(existsSync(ckpts) && readdirSync(ckpts).some((d) => d === "step-4"))) await new Promise((r) => setTimeout(r, 20));
    // the rank processes are mpirun's children running main.js with this output folder
    const ps = spawnSync("pgrep", ["-f", `^${process.execPath} ${cli} train .*--output_dir ${out}`], { encoding: "utf8" });
    const pids = String(ps.stdout).trim().split("\n").filter(Boolean).map(Number);
    assert.equal(pids.length, np, `found the ${np} rank processes`);
    process.kill(pids[pids.length - 1]!, "SIGKILL");
    const code = await exited;
    assert.notEqual(code, 0);
    assert.match(stderr, /process rank \d+ .*exited on signal 9/, "mpirun names the rank that died");
    assert.ok(!existsSync(join(out, "final")), "killed before the end");
    // mpirun has exited; the other rank, stuck in a collective with the dead one, is killed a moment later
    for (let i = 0; i < 500 && pids.some((p) => { try { process.kill(p, 0); return true; } catch { return false; } }); i++) await new Promise((r) => setTimeout(r, 20));
    const r = mpiRun(np, cli, ["train", "--resume", out, "--quiet"]);
    assert.equal(r.status, 0, String(r.stderr));
    assert.ok(readFileSync(join(out, "final", "model.safetensors")).equals(readFileSync(join(dir, "whole", "final", "model.safetensors"))), `np ${np}: resumed = uninterrupted, bit for bit`);
  }
});

test("under mpirun on the js backend: one line, exit 1", { skip: skipTraining }, () => {
  const r = mpiRun(1, cli, ["train", ...base, "--output_dir", join(tmp, "js"), "--backend", "js"]);
  assert.equal(r.status, 1);
  const err = String(r.stderr).trim().split("\n").filter((l) => l.startsWith("error:"));
  assert.equal(err.length, 1, String(r.stderr));
  assert.match(err[0]!, /running under mpirun \(1 ranks\) on the js backend; data-parallel runs need the native backend/);
});

test("resume on another world size keeps the global batch: 2 ranks' checkpoint on 1 rank (accumulation doubled, with a notice); on 3 ranks refused", { skip: skipTraining }, () => {
  const dir = join(tmp, "reshape");
  trainRun(2, join(dir, "whole"));
  const cut = join(dir, "cut");
  cpSync(join(dir, "whole"), cut, { recursive: true });
  // back to the step-2 checkpoint, as after a crash there
  rmSync(join(cut, "final"), { recursive: true, force: true });
  rmSync(join(cut, "checkpoints", "step-4"), { recursive: true, force: true });
  rmSync(join(cut, "summary.json"), { force: true });
  const three = mpiRun(3, cli, ["train", "--resume", cut]);
  assert.notEqual(three.status, 0, String(three.stderr));
  assert.match(String(three.stderr), /written by 2 ranks with a global batch of 16 pairs \(4 × 2 × 2\); 3 ranks of 4 pairs cannot make it up/);
  const one = mpiRun(1, cli, ["train", "--resume", cut]);
  assert.equal(one.status, 0, String(one.stderr));
  assert.match(String(one.stderr), /resuming a 2-rank run on 1: gradient_accumulation_steps 2 → 4, so each step still takes 16 pairs/);
  const d = maxWeightDiff(join(cut, "final", "model.safetensors"), join(dir, "whole", "final", "model.safetensors"));
  assert.ok(d <= PLAIN_TOLERANCE, `2 steps on 1 rank after 2 on 2 ranks: max |Δw| ${d}`);
});

test("SIGINT to mpirun: every rank stops after the same step, rank 0 writes its checkpoint, and the resume ends as an uninterrupted run", { skip: skipTraining }, async () => {
  const dir = join(tmp, "sigint");
  const extra = ["--max_steps", "30", "--save_steps", "100", "--eval_steps", "0"];
  trainRun(2, join(dir, "whole"), extra);
  const out = join(dir, "stopped");
  const child = spawn("mpirun", ["--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "TSDPO_THREADS=1", "-x", "TSDPO_BACKEND=native",
    process.execPath, cli, "train", ...base.filter((a) => a !== "--quiet"), "--output_dir", out, ...extra], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TSDPO_THREADS: "1" } });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  while (!(existsSync(join(out, "metrics.jsonl")) && readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").length > 3)) await new Promise((r) => setTimeout(r, 20));
  child.kill("SIGINT");
  await exited;
  const m = /stopped after step (\d+) of 30; checkpoint (\S+)/.exec(stderr);
  assert.ok(m, stderr);
  assert.ok(Number(m![1]) < 30 && existsSync(join(m![2]!, "model.safetensors")), "rank 0 wrote the checkpoint of the step all stopped after");
  const r = mpiRun(2, cli, ["train", "--resume", out, "--quiet"]);
  assert.equal(r.status, 0, String(r.stderr));
  assert.ok(readFileSync(join(out, "final", "model.safetensors")).equals(readFileSync(join(dir, "whole", "final", "model.safetensors"))), "resumed = uninterrupted");
});
