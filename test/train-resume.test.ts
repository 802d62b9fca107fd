// Resume after kill -9 is bit-identical. One run goes uninterrupted; a second, identical one is started as a child
// process of the built CLI, killed with SIGKILL in the middle (after step 3 is logged, while step 4 runs, so the
// newest checkpoint is step-2 and metrics.jsonl already holds a row the checkpoint does not cover), then continued
// with `tsdpo train --resume`. Every checkpoint and the final folder must hold the same bytes as the uninterrupted
// run's, and metrics.jsonl exactly one row per step with the same numbers.
//
// The run is chosen to exercise everything a resume must restore: a linear schedule with warmup (the step), an epoch
// boundary after the kill (the RNG that reshuffles the data), AdamW moments (the optimizer state) and periodic
// evaluation rows (also logged to metrics.jsonl).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fixture, repoRoot, storiesGguf, testBackendName } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-resume-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const cli = join(repoRoot, "dist", "src", "cli", "main.js");

const STEPS = 10;
const config = join(tmp, "config.json");
writeFileSync(config, JSON.stringify({
  model: storiesGguf, data: fixture("train", "pairs.jsonl"), backend: testBackendName, seed: 11,
  max_length: 48, per_device_train_batch_size: 2, max_steps: STEPS, save_steps: 2, save_total_limit: null, // keep all: resumed from each
  learning_rate: 1e-3, lr_scheduler_type: "linear", warmup_steps: 2,
  eval_size: 2, eval_steps: 4, // 14 training pairs: 7 steps per epoch, so step 8 starts a reshuffled epoch
}));

type Row = Record<string, number>;

/** metrics.jsonl rows that parse (a row being written when the process dies may be incomplete). */
function metricRows(dir: string): Row[] {
  const path = join(dir, "metrics.jsonl");
  if (!existsSync(path)) return [];
  const rows: Row[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    try {
      rows.push(JSON.parse(line) as Row);
    } catch {
      // blank or partial
    }
  }
  return rows;
}
const trainRows = (rows: Row[]): Row[] => rows.filter((r) => !("eval_loss" in r));
const evalRows = (rows: Row[]): Row[] => rows.filter((r) => "eval_loss" in r);
const withoutClock = (rows: Row[]): Row[] => rows.map(({ tokens_per_second: _t, ...rest }) => rest);
const checkpoints = (dir: string): string[] =>
  existsSync(join(dir, "checkpoints")) ? readdirSync(join(dir, "checkpoints")).filter((n) => /^step-\d+$/.test(n)).sort() : [];

function cliSync(...args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stderr: r.stderr };
}

test("a run killed with SIGKILL and resumed ends with the bytes of an uninterrupted run", async () => {
  const whole = join(tmp, "whole");
  const r0 = cliSync("train", config, `--output_dir=${whole}`);
  assert.equal(r0.code, 0, r0.stderr);

  // The same run, killed once step 3 is logged. Step 2's checkpoint is then complete (it is written before step 3
  // starts) and step 4's is not begun: the poll (every 5 ms) is far quicker than a step (~100 ms here).
  const cut = join(tmp, "cut");
  const child = spawn(process.execPath, [cli, "train", config, `--output_dir=${cut}`], { stdio: ["ignore", "ignore", "pipe"] });
  let childErr = "";
  child.stderr!.on("data", (d: Buffer) => (childErr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on("exit", (code, signal) => res({ code, signal })),
  );
  let atKill: { rows: number; checkpoints: string[]; final: boolean } | null = null;
  while (child.exitCode === null && child.signalCode === null) {
    const rows = trainRows(metricRows(cut)).length;
    if (rows >= 3 && existsSync(join(cut, "checkpoints", "step-2"))) {
      child.kill("SIGKILL");
      atKill = { rows, checkpoints: checkpoints(cut), final: existsSync(join(cut, "final")) };
      break;
    }
    await sleep(5);
  }
  const ex = await exited;
  assert.ok(atKill, `the run ended before it could be killed (make it longer):\n${childErr}`);
  assert.equal(ex.signal, "SIGKILL", `the child was not killed by SIGKILL (exit ${ex.code}):\n${childErr}`);
  assert.equal(atKill.final, false, "final/ existed when the run was killed");
  assert.ok(!existsSync(join(cut, "final")) && !existsSync(join(cut, "summary.json")), "the killed run reached its end");
  const newest = Number(atKill.checkpoints.at(-1)!.slice("step-".length));
  assert.ok(newest < STEPS, `killed too late: ${atKill.checkpoints}`);
  // The resume must drop the logged rows after its checkpoint, or they would appear twice.
  assert.ok(atKill.rows > newest, `killed at ${atKill.rows} logged steps with checkpoint step-${newest}: no rows to drop`);

  // What a kill during a checkpoint write, or a power cut during a metrics append, leaves: half-written temp
  // folders (renamed into place only when complete) and a torn last line. The resume must ignore and clear them.
  const leftovers = [join(cut, "checkpoints", "step-4.tmp-999999"), join(cut, "final.tmp-999999")];
  for (const d of leftovers) {
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "model.safetensors"), "partial");
  }
  appendFileSync(join(cut, "metrics.jsonl"), '{"rewards/chosen":0.01,"rewards/rej');

  const r1 = cliSync("train", "--resume", cut, "--quiet");
  assert.equal(r1.code, 0, r1.stderr);
  for (const d of leftovers) assert.ok(!existsSync(d), `${d} was left behind`);

  // Bytes: the final folder and every checkpoint.
  assert.deepEqual(checkpoints(cut), checkpoints(whole));
  assert.deepEqual(checkpoints(whole), [2, 4, 6, 8, 10].map((s) => `step-${s}`).sort());
  for (const sub of ["final", ...checkpoints(whole).map((c) => join("checkpoints", c))])
    for (const f of ["model.safetensors", "optimizer.safetensors", "trainer_state.json"]) {
      const [a, b] = [readFileSync(join(whole, sub, f)), readFileSync(join(cut, sub, f))];
      assert.ok(a.equals(b), `${sub}/${f} differs between the uninterrupted and the resumed run`);
    }

  // metrics.jsonl: one training row per step, evaluation rows at 4, 8 and the end, all with the same numbers.
  const [mw, mc] = [metricRows(whole), metricRows(cut)];
  assert.deepEqual(trainRows(mc).map((r) => r.step), Array.from({ length: STEPS }, (_, i) => i + 1));
  assert.deepEqual(evalRows(mc).map((r) => r.step), [4, 8, 10]);
  assert.deepEqual(withoutClock(mc), withoutClock(mw));
  assert.ok(trainRows(mw)[STEPS - 1]!.loss! < Math.LN2, "the run should learn something");
});
