// The reference policy's options (issue 21): ref_adapter (LoRA's reference = base + a frozen adapter), TR-DPO
// (sync_ref_model: the reference's parameters move towards the policy's) and reference_free (log π_ref = 0).
//
// Every expected number is recomputed outside the trainer: sequence log-probs come from `tsdpo logprobs` (with
// --adapter for LoRA) on the checkpoints a run saved, and TR-DPO's mixed parameters are rebuilt here from the saved
// arrays. The runs use all 16 pairs of the fixture in one micro-batch, so a step's logged rewards/chosen is the mean
// over the same pairs that `logprobs` scores; LoRA dropout is 0 so that the training forward is the scoring forward.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { loadModel } from "../src/io/load.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { applyOverrides, resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { fixture, repoRoot, storiesGguf, testBackendName } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-reference-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const cli = join(repoRoot, "dist", "src", "cli", "main.js");
const pairs = fixture("train", "pairs.jsonl");
const BETA = 0.5;
const ALPHA = 0.6;

type Row = Record<string, number>;
const metricRows = (dir: string): Row[] =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Row);
const withoutClock = (rows: Row[]): Row[] => rows.map(({ tokens_per_second: _t, ...rest }) => rest);

function runCli(...args: string[]): string {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `tsdpo ${args.join(" ")}\n${r.stderr}`);
  return r.stdout + r.stderr;
}

/** Per-pair chosen/rejected log-probs by `tsdpo logprobs`: the base, or the base + a PEFT adapter, or a model folder. */
function logprobs(opts: { model?: string; adapter?: string; data?: string }): { chosen: number[]; rejected: number[] } {
  const args = ["logprobs", "--model", opts.model ?? storiesGguf, "--data", opts.data ?? pairs, "--backend", testBackendName];
  if (opts.adapter) args.push("--adapter", opts.adapter);
  const rows = runCli(...args).trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { chosen_logps: number; rejected_logps: number });
  return { chosen: rows.map((r) => r.chosen_logps), rejected: rows.map((r) => r.rejected_logps) };
}

/** The logged rewards/chosen the trainer should show: β · mean_i(log π(chosen_i) − log π_ref(chosen_i)). */
const meanReward = (policy: number[], ref: number[]): number => (BETA * policy.reduce((a, x, i) => a + x - ref[i]!, 0)) / policy.length;

const base = {
  model: storiesGguf, data: pairs, backend: testBackendName, per_device_train_batch_size: 16, learning_rate: 1e-2,
  save_minutes: 0, save_total_limit: null, beta: BETA,
};

async function run(dir: string, extra: Record<string, unknown>, resume = false): Promise<void> {
  await train(resolveTrainConfig({ ...base, ...extra }, "test"), dir, { quiet: true, resume });
}

// An SFT LoRA adapter (2 steps of NLL on the chosen answers), the starting point of the DPO runs below.
const sft = join(tmp, "sft");
const sftAdapter = join(sft, "final");
before(async () => {
  await run(sft, { use_peft: true, lora_r: 4, lora_alpha: 8, lora_dropout: 0, loss_type: "sft", max_steps: 2 });
});

test("ref_adapter: continuing an adapter, the reference is base + a frozen copy of it (the default, said once); false gives the bare base", async () => {
  // Through the CLI, to see the notice as a user does.
  const dir = join(tmp, "dpo-ref-adapter");
  const config = join(tmp, "dpo-ref-adapter.json");
  writeFileSync(config, JSON.stringify({ ...base, adapter: sftAdapter, max_steps: 2, save_steps: 1 }));
  const out = runCli("train", config, `--output_dir=${dir}`);
  assert.equal(out.split("TRL's \"ref\" adapter").length - 1, 1, `the default change is announced once:\n${out}`);
  assert.equal(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).ref_adapter, true, "the saved config holds the resolved value");
  const rows = metricRows(dir);
  // Step 1: the policy is base + the SFT adapter, and so is the reference.
  assert.equal(rows[0]!["rewards/chosen"], 0);
  assert.equal(rows[0]!.loss, Math.LN2);
  // Step 2: the policy moved (checkpoint step-1), the reference did not (still the SFT adapter's bits).
  const sftLp = logprobs({ adapter: sftAdapter });
  const step1Lp = logprobs({ adapter: join(dir, "checkpoints", "step-1") });
  const baseLp = logprobs({});
  const want = meanReward(step1Lp.chosen, sftLp.chosen);
  assert.ok(Math.abs(rows[1]!["rewards/chosen"]! - want) < 1e-6, `rewards/chosen ${rows[1]!["rewards/chosen"]} vs ${want} (base + frozen adapter)`);
  assert.ok(Math.abs(meanReward(step1Lp.chosen, baseLp.chosen) - want) > 1, "the bare base would give another value");

  // ref_adapter: false keeps the reference of before: the base with the adapters off.
  const off = join(tmp, "dpo-ref-base");
  await run(off, { adapter: sftAdapter, max_steps: 1, ref_adapter: false });
  assert.equal(JSON.parse(readFileSync(join(off, "config.json"), "utf8")).ref_adapter, false);
  const got = metricRows(off)[0]!["rewards/chosen"]!;
  const wantBase = meanReward(sftLp.chosen, baseLp.chosen);
  assert.ok(Math.abs(got - wantBase) < 1e-6, `rewards/chosen ${got} vs ${wantBase} (bare base)`);
  assert.ok(Math.abs(wantBase) > 1, "and it is not the zero of a reference equal to the policy");
});

test("ref_adapter with precompute_ref_log_probs: the cache is keyed by the adapter too, so the base's cached numbers are not reused", async () => {
  const saved = process.env.TSDPO_CACHE_DIR;
  process.env.TSDPO_CACHE_DIR = join(tmp, "cache");
  try {
    // First the bare base's log-probs are cached for these pairs, then base + adapter must get an entry of its own.
    const off = join(tmp, "pre-base"), on = join(tmp, "pre-adapter");
    await run(off, { adapter: sftAdapter, max_steps: 1, ref_adapter: false, precompute_ref_log_probs: true });
    await run(on, { adapter: sftAdapter, max_steps: 1, precompute_ref_log_probs: true });
    assert.ok(Math.abs(metricRows(off)[0]!["rewards/chosen"]!) > 1, "the base is not the policy's start");
    assert.equal(metricRows(on)[0]!["rewards/chosen"], 0, "cached reference = base + the adapter = the policy's start");
    // two references × (train split, eval split)
    assert.equal(readdirSync(join(tmp, "cache")).filter((f) => f.startsWith("ref-logps-")).length, 4);
  } finally {
    if (saved === undefined) delete process.env.TSDPO_CACHE_DIR;
    else process.env.TSDPO_CACHE_DIR = saved;
  }
});

/** Every tensor of a safetensors file, by name. */
function tensors(path: string): Map<string, Float32Array> {
  return new Map([...readSafetensors(path).tensors].map(([k, t]) => [k, t.data as Float32Array]));
}

/** α·policy + (1−α)·ref, rounded to float32: TRL's soft update, computed here element by element. */
function mixed(policy: Float32Array, ref: Float32Array): Float32Array {
  assert.equal(policy.length, ref.length);
  return Float32Array.from(policy, (p, i) => ALPHA * p + (1 - ALPHA) * ref[i]!);
}

function assertSameBits(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i++)
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
}

test("TR-DPO, full fine-tuning: after the sync step the reference is α·policy + (1−α)·ref, and scores as those parameters", async () => {
  const dir = join(tmp, "trdpo-full");
  await run(dir, { learning_rate: 1e-3, max_steps: 3, save_steps: 1, sync_ref_model: true, ref_model_sync_steps: 2, ref_model_mixup_alpha: ALPHA });
  const ck = (n: number): string => join(dir, "checkpoints", `step-${n}`);
  const baseParams = loadModel(storiesGguf).model.params as Float32Array;
  // No sync at step 1: the reference is still the starting model, bit for bit.
  assertSameBits(loadModel(join(ck(1), "ref_model")).model.params as Float32Array, baseParams, "step-1 reference");
  // Step 2 syncs after its optimizer step: the reference is the mixture of the step-2 policy and the start.
  const policy2 = loadModel(ck(2)).model.params as Float32Array;
  const ref2 = loadModel(join(ck(2), "ref_model")).model.params as Float32Array;
  assertSameBits(ref2, mixed(policy2, baseParams), "step-2 reference");
  // Step 3's forward scores against that mixed reference.
  const p2 = logprobs({ model: ck(2) }), r2 = logprobs({ model: join(ck(2), "ref_model") }), b = logprobs({});
  const got = metricRows(dir)[2]!["rewards/chosen"]!;
  const want = meanReward(p2.chosen, r2.chosen);
  assert.ok(Math.abs(got - want) < 1e-5, `step 3 rewards/chosen ${got} vs ${want} (mixed reference)`);
  assert.ok(Math.abs(meanReward(p2.chosen, b.chosen) - want) > 100 * Math.abs(got - want) + 1e-3, "the unmixed reference would give another value");
});

test("TR-DPO, LoRA: the reference adapter's A and B are each mixed (not B·A), starting from the frozen SFT adapter", async () => {
  const dir = join(tmp, "trdpo-lora");
  await run(dir, { adapter: sftAdapter, max_steps: 3, save_steps: 1, sync_ref_model: true, ref_model_sync_steps: 2, ref_model_mixup_alpha: ALPHA });
  const ck2 = join(dir, "checkpoints", "step-2");
  const policy = tensors(join(ck2, "adapter_model.safetensors"));
  const start = tensors(join(sftAdapter, "adapter_model.safetensors"));
  const ref = tensors(join(ck2, "ref_adapter", "adapter_model.safetensors"));
  assert.deepEqual([...ref.keys()].sort(), [...policy.keys()].sort());
  assert.ok([...ref.keys()].some((k) => k.includes("lora_A")) && [...ref.keys()].some((k) => k.includes("lora_B")));
  for (const [name, p] of policy) assertSameBits(ref.get(name)!, mixed(p, start.get(name)!), `step-2 reference ${name}`);
  const p2 = logprobs({ adapter: ck2 }), r2 = logprobs({ adapter: join(ck2, "ref_adapter") }), s = logprobs({ adapter: sftAdapter });
  const got = metricRows(dir)[2]!["rewards/chosen"]!;
  const want = meanReward(p2.chosen, r2.chosen);
  assert.ok(Math.abs(got - want) < 1e-5, `step 3 rewards/chosen ${got} vs ${want} (mixed reference adapter)`);
  assert.ok(Math.abs(meanReward(p2.chosen, s.chosen) - want) > 100 * Math.abs(got - want) + 1e-3, "the unmixed reference would give another value");
});

/**
 * A run of 4 steps syncing at 2 and 4, and the same run cut short after step `k` (later checkpoints, final/ and the
 * run's end products deleted, as after a kill -9 right after step k's checkpoint) then resumed: same bytes.
 */
async function assertResumeAcrossSync(name: string, extra: Record<string, unknown>, files: string[]): Promise<void> {
  const whole = join(tmp, `${name}-whole`);
  const cfg = { ...extra, max_steps: 4, save_steps: 1, sync_ref_model: true, ref_model_sync_steps: 2, ref_model_mixup_alpha: ALPHA };
  await run(whole, cfg);
  for (const k of [1, 3]) {
    const cut = join(tmp, `${name}-cut${k}`);
    cpSync(whole, cut, { recursive: true });
    for (const n of [2, 3, 4]) if (n > k) rmSync(join(cut, "checkpoints", `step-${n}`), { recursive: true });
    for (const f of ["final", "summary.json", "report.html"]) rmSync(join(cut, f), { recursive: true, force: true });
    await run(cut, cfg, true);
    for (const f of files)
      for (const at of ["final", join("checkpoints", "step-4")])
        assert.ok(readFileSync(join(cut, at, f)).equals(readFileSync(join(whole, at, f))), `${name} resumed after step ${k}: ${at}/${f} differs`);
    assert.deepEqual(withoutClock(metricRows(cut)), withoutClock(metricRows(whole)), `${name} resumed after step ${k}: metrics`);
  }
}

test("TR-DPO: a run resumed before or after a sync step ends with the bytes of an uninterrupted one (LoRA and full)", async () => {
  await assertResumeAcrossSync("lora", { use_peft: true, lora_r: 4, lora_alpha: 8, lora_dropout: 0.1 },
    ["adapter_model.safetensors", join("ref_adapter", "adapter_model.safetensors")]);
  await assertResumeAcrossSync("full", { learning_rate: 1e-3 }, ["model.safetensors", join("ref_model", "model.safetensors")]);
  assert.ok(existsSync(join(tmp, "full-whole", "final", "ref_model", "config.json")), "the reference is a model folder");
  assert.ok(readdirSync(join(tmp, "lora-whole", "final", "ref_adapter")).includes("adapter_config.json"), "the reference is a PEFT folder");
});

test("TR-DPO: a run killed with SIGKILL after a sync step and resumed ends with the bytes of an uninterrupted one", async () => {
  const config = join(tmp, "kill.json");
  writeFileSync(config, JSON.stringify({
    ...base, per_device_train_batch_size: 4, learning_rate: 1e-3, max_steps: 6, save_steps: 1, sync_ref_model: true, ref_model_sync_steps: 2, ref_model_mixup_alpha: ALPHA,
  }));
  const whole = join(tmp, "kill-whole");
  runCli("train", config, `--output_dir=${whole}`, "--quiet");
  // Killed once step 3 is logged: the sync of step 2 is behind it and those of steps 4 and 6 are ahead.
  const cut = join(tmp, "kill-cut");
  const child = spawn(process.execPath, [cli, "train", config, `--output_dir=${cut}`, "--quiet"], { stdio: "ignore" });
  const exited = new Promise((res) => child.on("exit", res));
  let killedEarly = false;
  while (child.exitCode === null && child.signalCode === null) {
    if (existsSync(join(cut, "metrics.jsonl")) && readFileSync(join(cut, "metrics.jsonl"), "utf8").split("\n").length > 3) {
      child.kill("SIGKILL");
      killedEarly = !existsSync(join(cut, "final"));
      break;
    }
    await sleep(5);
  }
  await exited;
  assert.ok(killedEarly, "the run was killed before it finished");
  runCli("train", "--resume", cut, "--quiet");
  for (const f of ["model.safetensors", join("ref_model", "model.safetensors")])
    assert.ok(readFileSync(join(cut, "final", f)).equals(readFileSync(join(whole, "final", f))), `final/${f} differs`);
  assert.deepEqual(withoutClock(metricRows(cut)), withoutClock(metricRows(whole)));
});

test("reference_free: the loss is −log σ(β·(log π_w − log π_l)) from the policy's log-probs alone", async () => {
  const two = join(tmp, "two.jsonl");
  writeFileSync(two, readFileSync(pairs, "utf8").split("\n").slice(0, 2).join("\n") + "\n");
  const dir = join(tmp, "reference-free");
  await run(dir, { data: two, per_device_train_batch_size: 2, max_steps: 1, reference_free: true });
  const lp = logprobs({ data: two });
  // by hand: softplus(−x) = −log σ(x), averaged over the 2 pairs
  const perPair = lp.chosen.map((c, i) => Math.log1p(Math.exp(-BETA * (c - lp.rejected[i]!))));
  const want = (perPair[0]! + perPair[1]!) / 2;
  const row = metricRows(dir)[0]!;
  assert.ok(Math.abs(row.loss! - want) < 1e-6, `loss ${row.loss} vs ${want}`);
  assert.ok(Math.abs(row["rewards/chosen"]! - (BETA * (lp.chosen[0]! + lp.chosen[1]!)) / 2) < 1e-5, "rewards are β·log π");
  assert.ok(Math.abs(want - Math.LN2) > 1e-2, "a reference equal to the policy would give ln 2");
  const summary = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")) as { memory: { plan: Record<string, number> } };
  assert.equal(summary.memory.plan.reference, 0, "no reference copy is planned");
});

test("config errors name the reference keys and say why", () => {
  const bad = (extra: Record<string, unknown>, re: RegExp): void =>
    assert.throws(() => resolveTrainConfig({ ...base, ...extra }, "cfg.json"), (e: Error) => {
      assert.match(e.message, re);
      assert.match(e.message, /^cfg\.json: /);
      return true;
    });
  bad({ sync_ref_model: true, precompute_ref_log_probs: true }, /"sync_ref_model".*"precompute_ref_log_probs".*stale/);
  bad({ use_peft: true, ref_adapter: join(tmp, "nope") }, /"ref_adapter".*nope.*does not exist/);
  bad({ use_peft: true, ref_adapter: tmp }, /"ref_adapter".*not a PEFT adapter folder/);
  bad({ use_peft: true, ref_adapter: true }, /"ref_adapter": true means the adapter being continued, but "adapter" is not set/);
  bad({ adapter: sftAdapter, ref_adapter: true, ref_model: storiesGguf }, /"ref_adapter".*"ref_model"/);
  bad({ reference_free: true, ref_model: storiesGguf }, /"reference_free".*"ref_model"/);
  bad({ reference_free: true, precompute_ref_log_probs: true }, /"reference_free".*"precompute_ref_log_probs"/);
  bad({ reference_free: true, sync_ref_model: true }, /"reference_free".*"sync_ref_model"/);
  bad({ reference_free: true, loss_type: "simpo" }, /"reference_free".*simpo.*uses no reference/);
  bad({ sync_ref_model: true, ref_dtype: "bf16" }, /"sync_ref_model".*"ref_dtype": "f32"/);
  bad({ sync_ref_model: true, use_peft: true, ref_model: storiesGguf }, /"sync_ref_model" with LoRA.*"ref_model"/);
  bad({ ref_model_mixup_alpha: 0 }, /"ref_model_mixup_alpha" must be in \(0, 1\]/);
  bad({ ref_model_sync_steps: 0 }, /"ref_model_sync_steps" must be ≥ 1/);
  bad({ ref_adapter: 3 }, /"ref_adapter" must be a PEFT adapter folder, true/);
  // On the command line, true/false are values of the key, not file names; a path must exist.
  assert.equal(applyOverrides({}, { ref_adapter: "false" }).ref_adapter, false);
  assert.equal(applyOverrides({}, { ref_adapter: "true" }).ref_adapter, true);
  assert.throws(() => applyOverrides({}, { ref_adapter: join(tmp, "nope") }), /"ref_adapter".*does not exist/);
  // TRL's defaults.
  const d = resolveTrainConfig({}, "defaults");
  assert.deepEqual([d.sync_ref_model, d.ref_model_mixup_alpha, d.ref_model_sync_steps, d.reference_free, d.ref_adapter], [false, 0.6, 512, false, null]);
});
