// KTO (and TRL's unpaired APO-zero): the loss, its gradient and the KL reference point z0 worked out by hand on a
// 4-row batch for both kto_kl modes, central differences, the mismatched pairs the trainer builds, the unpaired data
// and its errors, and short runs of the real trainer on stories260K (a running-mode run resumed from a checkpoint ends
// with the bytes of an uninterrupted one, so z0's moving average is checkpointed).
//
// Expected values use only Math (sig is defined here), with the batch's numbers written in.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import {
  type KtoLossConfig, type LossState, type PairBatch, computeLoss, lossConfigFromJson, lossConfigToJson, lossMetrics, initialLossState,
} from "../src/loss/index.js";
import { groupMeans } from "../src/loss/metrics.js";
import { isUnpairedRow, labelsOf, loadUnpairedData, rotateKlCompletions, weightNote, type TokenizedUnpaired } from "../src/data/unpaired.js";
import type { TokenizedPair } from "../src/data/types.js";
import { loadModel } from "../src/io/load.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { assertAllClose, fixture, storiesGguf, testBackendName } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-kto-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const sig = (x: number): number => 1 / (1 + Math.exp(-x));

function kto(over: Partial<KtoLossConfig> = {}): KtoLossConfig {
  return { ...(lossConfigFromJson({ loss_type: "kto" }, "test") as KtoLossConfig), ...over };
}

// The hand batch, B = 4, β = 0.5:
//   row   label        π      ρ      r = π − ρ  |  π'     ρ'      k = π' − ρ' (the row's prompt, another row's answer)
//   0     desirable    −10    −11     1         |  −13    −13.4    0.4
//   1     undesirable  −12    −11    −1         |  −9     −9.2     0.2
//   2     desirable    −20    −19    −1         |  −16    −16.6    0.6
//   3     undesirable  −15    −17     2         |  −14    −13.8   −0.2
// mean k = 1.0 / 4 = 0.25 (the mismatched log-ratios are exact in binary up to the last bits; compared to 1e-12)
function handBatch(): PairBatch {
  return {
    policyChosenLogps: Float64Array.from([-10, -12, -20, -15]),
    policyRejectedLogps: Float64Array.from([-13, -9, -16, -14]),
    refChosenLogps: Float64Array.from([-11, -11, -19, -17]),
    refRejectedLogps: Float64Array.from([-13.4, -9.2, -16.6, -13.8]),
    chosenLengths: Int32Array.from([4, 5, 10, 6]),
    rejectedLengths: Int32Array.from([3, 7, 2, 5]),
    labels: Uint8Array.from([1, 0, 1, 0]),
  };
}

/** KTO's per-row losses for z0, with r = [1, −1, −1, 2] and labels [1, 0, 1, 0] written in (β = 0.5, weights wd, wu). */
function handLosses(z0: number, wd = 1, wu = 1): number[] {
  return [wd * (1 - sig(0.5 * (1 - z0))), wu * (1 - sig(0.5 * (z0 + 1))), wd * (1 - sig(0.5 * (-1 - z0))), wu * (1 - sig(0.5 * (z0 - 2)))];
}
/** d(mean loss)/dπ_i for the same rows: −w·s·β·σ(x)(1 − σ(x))/B with x = s·β(r − z0), s = +1 desirable, −1 undesirable. */
function handGrad(z0: number, wd = 1, wu = 1): number[] {
  const g = (x: number, w: number, s: number): number => (-w * s * 0.5 * sig(x) * (1 - sig(x))) / 4;
  return [g(0.5 * (1 - z0), wd, 1), g(-0.5 * (-1 - z0), wu, -1), g(0.5 * (-1 - z0), wd, 1), g(-0.5 * (2 - z0), wu, -1)];
}

function expectLoss(out: ReturnType<typeof computeLoss>, losses: number[], grad: number[], what: string): void {
  assertAllClose(out.losses, losses, 1e-12, 0, `${what} losses`);
  assert.ok(Math.abs(out.loss - losses.reduce((a, b) => a + b, 0) / 4) < 1e-12, `${what}: loss ${out.loss}`);
  assertAllClose(out.dPolicyChosenLogps, grad, 1e-12, 0, `${what} gradient`);
  // z0 is detached, as in TRL: the mismatched completions get no gradient
  assert.deepEqual([...out.dPolicyRejectedLogps], [0, 0, 0, 0], `${what}: the mismatched completions have a gradient`);
}

describe("KTO loss, by hand on a 4-row batch (β = 0.5)", () => {
  test("kto_kl batch: z0 = max(0, mean k) = 0.25", () => {
    const out = computeLoss(kto({ beta: 0.5 }), handBatch());
    assert.ok(Math.abs(out.unpaired!.kl - 0.25) < 1e-12, `z0 ${out.unpaired!.kl}`);
    expectLoss(out, handLosses(0.25), handGrad(0.25), "batch");
    assert.deepEqual(out.state, initialLossState(), "the batch estimate keeps no state");
  });

  test("kto_kl batch: a negative mismatched mean is clamped to z0 = 0, as TRL's clamp(min=0)", () => {
    const b = handBatch();
    b.refRejectedLogps = Float64Array.from([-12, -8, -15, -13]); // k = [−1, −1, −1, −1]
    const out = computeLoss(kto({ beta: 0.5 }), b);
    assert.equal(out.unpaired!.kl, 0);
    expectLoss(out, handLosses(0), handGrad(0), "clamped");
  });

  test("kto_kl running, fresh state: the bias-corrected average after one batch is that batch's mean, 0.25", () => {
    const out = computeLoss(kto({ beta: 0.5, kto_kl: "running", kto_kl_decay: 0.9 }), handBatch());
    // a = 0.9·0 + 0.1·0.25 = 0.025, n = 1, z0 = 0.025 / (1 − 0.9) = 0.25
    assert.ok(Math.abs(out.unpaired!.kl - 0.25) < 1e-12);
    expectLoss(out, handLosses(0.25), handGrad(0.25), "running fresh");
    assert.ok(Math.abs(out.state.ktoKl!.average - 0.025) < 1e-15 && out.state.ktoKl!.updates === 1, JSON.stringify(out.state));
  });

  test("kto_kl running with a prior average: updated with this batch before use; the input state is not changed", () => {
    const prior: LossState = { ...initialLossState(), ktoKl: { average: 0.3, updates: 2 } };
    const out = computeLoss(kto({ beta: 0.5, kto_kl: "running", kto_kl_decay: 0.9 }), handBatch(), prior);
    // a = 0.9·0.3 + 0.1·0.25 = 0.295, n = 3, z0 = 0.295 / (1 − 0.9³) = 0.295 / 0.271
    const z0 = 0.295 / 0.271;
    assert.ok(Math.abs(out.unpaired!.kl - z0) < 1e-12, `z0 ${out.unpaired!.kl} vs ${z0}`);
    expectLoss(out, handLosses(z0), handGrad(z0), "running");
    assert.ok(Math.abs(out.state.ktoKl!.average - 0.295) < 1e-15 && out.state.ktoKl!.updates === 3);
    assert.deepEqual(prior, { ...initialLossState(), ktoKl: { average: 0.3, updates: 2 } }, "input state mutated");
  });

  test("kto_kl running: the clamp is on the average, not on each batch (a negative batch lowers it)", () => {
    const b = handBatch();
    b.refRejectedLogps = Float64Array.from([-12, -8, -15, -13]); // this batch's mean k = −1
    const prior: LossState = { ...initialLossState(), ktoKl: { average: 0.5, updates: 1 } };
    const out = computeLoss(kto({ beta: 0.5, kto_kl: "running", kto_kl_decay: 0.5 }), b, prior);
    // a = 0.5·0.5 + 0.5·(−1) = −0.25 < 0: z0 = max(0, −0.25/0.75) = 0, and the state keeps −0.25
    assert.equal(out.unpaired!.kl, 0);
    assert.equal(out.state.ktoKl!.average, -0.25);
  });

  test("desirable_weight and undesirable_weight scale their rows' losses and gradients", () => {
    const out = computeLoss(kto({ beta: 0.5, desirable_weight: 2, undesirable_weight: 0.5 }), handBatch());
    expectLoss(out, handLosses(0.25, 2, 0.5), handGrad(0.25, 2, 0.5), "weighted");
  });

  test("apo_zero_unpaired: 1 − σ(βr) for desirable rows, σ(βr) for undesirable ones, no z0", () => {
    const cfg = lossConfigFromJson({ loss_type: "apo_zero_unpaired", beta: 0.5 }, "test");
    const out = computeLoss(cfg, handBatch());
    assert.equal(out.unpaired!.kl, 0);
    const losses = [1 - sig(0.5), sig(-0.5), 1 - sig(-0.5), sig(1)];
    const d = (x: number): number => 0.5 * sig(x) * (1 - sig(x)) / 4;
    expectLoss(out, losses, [-d(0.5), d(-0.5), -d(-0.5), d(1)], "apo_zero_unpaired");
  });

  for (const [name, cfg, state] of [
    ["batch", kto({ beta: 0.7 }), initialLossState()],
    ["running", kto({ beta: 0.7, kto_kl: "running", kto_kl_decay: 0.8, desirable_weight: 1.3, undesirable_weight: 0.6 }), { ...initialLossState(), ktoKl: { average: 0.4, updates: 5 } }],
    ["apo_zero_unpaired", lossConfigFromJson({ loss_type: "apo_zero_unpaired", beta: 0.7 }, "test"), initialLossState()],
  ] as const)
    test(`${name}: the gradient matches central differences (z0 held, as it is detached)`, () => {
      const b = handBatch();
      b.policyChosenLogps = Float64Array.from([-3.1, -5.2, -4.4, -2.0]);
      b.refChosenLogps = Float64Array.from([-4.0, -2.5, -4.9, -3.3]);
      const out = computeLoss(cfg, b, state);
      const h = 1e-5;
      const fd = b.policyChosenLogps.map((x0, i) => {
        b.policyChosenLogps[i] = x0 + h;
        const up = computeLoss(cfg, b, state).loss;
        b.policyChosenLogps[i] = x0 - h;
        const down = computeLoss(cfg, b, state).loss;
        b.policyChosenLogps[i] = x0;
        return (up - down) / (2 * h);
      });
      assertAllClose(out.dPolicyChosenLogps, fd, 1e-9, 1e-6, `${name} gradient`);
      assert.ok(out.dPolicyChosenLogps.some((g) => Math.abs(g) > 1e-3), "a gradient this small proves nothing");
    });

  test("metrics under TRL's names: kl, rewards and logps averaged by label, margins, loss", () => {
    const out = computeLoss(kto({ beta: 0.5 }), handBatch());
    // logit sums and tokens per row: rows 0..3 their own completions, 4..7 the mismatched ones (never counted)
    const logits = groupMeans([2, 3, 4, 5, 100, 100, 100, 100], [1, 1, 3, 1, 1, 1, 1, 1], out.unpaired!.labels);
    const m = lossMetrics(out, logits);
    assert.deepEqual(Object.keys(m), [
      "kl", "rewards/chosen", "logps/chosen", "rewards/rejected", "logps/rejected", "rewards/margins", "logits/chosen", "logits/rejected", "loss",
    ]);
    assert.ok(Math.abs(m.kl! - 0.25) < 1e-12);
    assert.equal(m["rewards/chosen"], 0.5 * (1 + -1) / 2);
    assert.equal(m["rewards/rejected"], 0.5 * (-1 + 2) / 2);
    assert.equal(m["rewards/margins"], -0.25);
    assert.equal(m["logps/chosen"], (-10 + -20) / 2);
    assert.equal(m["logps/rejected"], (-12 + -15) / 2);
    assert.equal(m["logits/chosen"], (2 + 4) / (1 + 3));
    assert.equal(m["logits/rejected"], (3 + 5) / 2);
    // a batch without undesirable rows logs no rewards/rejected (and no margin), rather than a 0
    const b = handBatch();
    b.labels = Uint8Array.from([1, 1, 1, 1]);
    const only = lossMetrics(computeLoss(kto({ beta: 0.5 }), b));
    assert.ok(!("rewards/rejected" in only) && !("rewards/margins" in only) && "rewards/chosen" in only, JSON.stringify(only));
  });

  test("labels are required, and shapes are checked", () => {
    const b = handBatch();
    b.labels = null;
    assert.throws(() => computeLoss(kto(), b), /needs the rows' labels/);
    b.labels = Uint8Array.from([1, 0]);
    assert.throws(() => computeLoss(kto(), b), /labels has 2 entries, expected B=4/);
  });
});

describe("KTO config", () => {
  test("defaults are KTOConfig's; JSON round trip; apo_zero_unpaired has no kto_kl keys", () => {
    const c = kto();
    assert.deepEqual(
      { beta: c.beta, desirable_weight: c.desirable_weight, undesirable_weight: c.undesirable_weight, kto_kl: c.kto_kl },
      { beta: 0.1, desirable_weight: 1, undesirable_weight: 1, kto_kl: "batch" },
    );
    assert.deepEqual(lossConfigFromJson(lossConfigToJson(c), "x"), c);
    const apo = lossConfigFromJson({ loss_type: "apo_zero_unpaired" }, "x");
    assert.ok(!("kto_kl" in lossConfigToJson(apo)));
    assert.deepEqual(lossConfigFromJson(lossConfigToJson(apo), "x"), apo);
  });

  test("bad values and combinations name the key", () => {
    const fails = (o: unknown, re: RegExp): void => assert.throws(() => lossConfigFromJson(o, "run.json: loss"), (e: unknown) => e instanceof TsdpoError && re.test(e.message));
    fails({ loss_type: ["kto", "sigmoid"] }, /"kto" trains on unpaired rows and cannot be combined/);
    fails({ loss_type: "kto", kto_kl: "ema" }, /kto_kl: expected "batch".*or "running"/);
    fails({ loss_type: "kto", kto_kl_decay: 1 }, /kto_kl_decay: expected a number in \(0, 1\)/);
    fails({ loss_type: "kto", desirable_weight: 0 }, /desirable_weight: expected a number > 0/);
    fails({ loss_type: "apo_zero_unpaired", kto_kl: "running" }, /key "kto_kl" does not apply to apo_zero_unpaired/);
    fails({ loss_type: "kto", label_smoothing: 0.1 }, /key "label_smoothing" does not apply to kto/);
  });

  test("training config: kto_kl batch needs two rows per micro-batch and no cached reference; unpair needs an unpaired loss", () => {
    const fails = (o: Record<string, unknown>, re: RegExp): void =>
      assert.throws(() => resolveTrainConfig({ model: storiesGguf, ...o }, "kto.json"), (e: unknown) => e instanceof TsdpoError && re.test(e.message));
    fails({ loss_type: "kto", per_device_train_batch_size: 1 }, /kto_kl "batch" estimates .* per_device_train_batch_size 1 leaves none .* kto_kl: "running"/);
    fails({ loss_type: "kto", precompute_ref_log_probs: true }, /precompute_ref_log_probs caches .* set kto_kl: "running"/);
    fails({ unpair: true }, /"unpair" turns preference pairs into the unpaired rows .* loss_type \["sigmoid"\]/);
    resolveTrainConfig({ model: storiesGguf, loss_type: "kto", kto_kl: "running", per_device_train_batch_size: 1, precompute_ref_log_probs: true }, "ok");
    resolveTrainConfig({ model: storiesGguf, loss_type: "apo_zero_unpaired", per_device_train_batch_size: 1 }, "ok");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Mismatched pairs and data

const ids = (...x: number[]): Int32Array => Int32Array.from(x);
function row(n: number, label: boolean): TokenizedUnpaired {
  return { source: { file: "x", format: "jsonl", line: n + 1, index: n }, promptIds: ids(100 + n), chosenIds: ids(n, n), rejectedIds: ids(9), truncated: false, label };
}

describe("KTO's mismatched pairs", () => {
  test("kto_kl batch: TRL's rotation, (x1, y4), (x2, y1), (x3, y2), (x4, y3); one row keeps its fixed partner", () => {
    const rows = [row(1, true), row(2, false), row(3, true), row(4, false)];
    const rot = rotateKlCompletions(rows);
    assert.deepEqual(rot.map((r) => [r.promptIds[0], r.chosenIds[0], r.rejectedIds[0]]), [[101, 1, 4], [102, 2, 1], [103, 3, 2], [104, 4, 3]]);
    assert.deepEqual([...labelsOf(rot)], [1, 0, 1, 0]);
    assert.ok(rot.every(isUnpairedRow));
    assert.equal(rotateKlCompletions([rows[0]!])[0]!.rejectedIds[0], 9);
  });

  test("a preference pair has no label: an unpaired loss refuses it", () => {
    const pair: TokenizedPair = { source: row(0, true).source, promptIds: ids(1), chosenIds: ids(2), rejectedIds: ids(3), truncated: false };
    assert.throws(() => labelsOf([pair]), /preference pair without a label/);
  });
});

const storiesTok = () => loadModel(storiesGguf).tokenizer;

function writeJsonl(name: string, rows: unknown[]): string {
  const p = join(tmp, name);
  writeFileSync(p, rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n");
  return p;
}

describe("unpaired data", () => {
  const tok = storiesTok();
  const opts = { unpair: false, kl: true, seed: 3 };

  test("{prompt, completion, label} rows: fixed partners form one cycle through the rows, never a row itself", async () => {
    const rows = Array.from({ length: 7 }, (_, i) => ({ prompt: `Tom had ${i} dogs.`, completion: ` He was happy ${i} times.`, label: i % 2 === 0 }));
    const d = await loadUnpairedData(writeJsonl("seven.jsonl", rows), tok, opts);
    const own = d.pairs.map((r) => r.chosenIds.join());
    const partner = d.pairs.map((r) => own.indexOf(r.rejectedIds.join()));
    assert.ok(partner.every((p, i) => p >= 0 && p !== i), `partners ${partner}`);
    let seen = 0;
    for (let i = 0, n = 0; n < 7; n++, i = partner[i]!) seen |= 1 << i;
    assert.equal(seen, 127, "the partners form one cycle");
    assert.deepEqual([...labelsOf(d.pairs)], [1, 0, 1, 0, 1, 0, 1]);
    assert.match(d.notes!.join("\n"), /4 desirable, 3 undesirable/);
    // apo_zero_unpaired has no z0: the slot holds one placeholder token
    const apo = await loadUnpairedData(writeJsonl("seven.jsonl", rows), tok, { ...opts, kl: false });
    assert.ok(apo.pairs.every((r) => r.rejectedIds.length === 1 && r.rejectedIds[0] === r.chosenIds[0]));
  });

  test("unpair: true makes each pair a desirable (chosen) and an undesirable (rejected) row with the same prompt", async () => {
    const d = await loadUnpairedData(fixture("train", "pairs.jsonl"), tok, { ...opts, unpair: true });
    assert.equal(d.pairs.length, 32);
    const [c, r] = [d.pairs[0] as TokenizedUnpaired, d.pairs[1] as TokenizedUnpaired];
    assert.equal(c.label, true);
    assert.equal(r.label, false);
    assert.deepEqual([...c.promptIds], [...r.promptIds]);
    assert.equal(tok.decode([...c.chosenIds]).trim().replace(/\s+/g, " ").startsWith("She loved it."), true);
    assert.equal(tok.decode([...r.chosenIds]).trim().startsWith("It was a car."), true);
  });

  test("a label that is not a boolean is one line naming the file, line and field", async () => {
    const rows = [{ prompt: "a", completion: " b", label: true }, { prompt: "c", completion: " d", label: "yes" }];
    const path = writeJsonl("badlabel.jsonl", rows);
    await assert.rejects(loadUnpairedData(path, tok, opts), (e: unknown) => {
      assert.ok(e instanceof TsdpoError);
      assert.equal(e.message.split("\n").length, 1, e.message);
      assert.match(e.message, new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:2: label: is a string, not a boolean; it must be true \\(a desirable answer\\) or false`));
      return true;
    });
    await assert.rejects(loadUnpairedData(writeJsonl("one.jsonl", [{ prompt: "a", completion: " b", label: 1 }]), tok, opts), /:1: label: is a number \(1\), not a boolean; .* for 1 write true$/);
    await assert.rejects(loadUnpairedData(writeJsonl("quoted.jsonl", [{ prompt: "a", completion: " b", label: "false" }]), tok, opts), /write it without quotes, as the JSON boolean false$/);
    // skip_invalid counts it instead
    const skipped = await loadUnpairedData(writeJsonl("mixed.jsonl", [...rows, { prompt: "e", completion: " f", label: false }]), tok, { ...opts, skipInvalid: true });
    assert.equal(skipped.invalid.length, 1);
    assert.equal(skipped.invalid[0]!.field, "label");
  });

  test("CSV cells true and false are labels", async () => {
    const p = join(tmp, "rows.csv");
    writeFileSync(p, "prompt,completion,label\nTom ran.,He fell.,true\nLily sang.,She slept.,FALSE\n");
    const d = await loadUnpairedData(p, tok, { ...opts, kl: false });
    assert.deepEqual([...labelsOf(d.pairs)], [1, 0]);
  });

  test("a KTO file with only desirable rows is refused, saying what the KL reference point would then do", async () => {
    const path = writeJsonl("good.jsonl", [{ prompt: "a", completion: " b", label: true }, { prompt: "c", completion: " d", label: true }]);
    await assert.rejects(loadUnpairedData(path, tok, opts), (e: unknown) => {
      assert.ok(e instanceof TsdpoError && e.kind === "input");
      assert.equal(e.message.split("\n").length, 1);
      assert.match(e.message, /all 2 training rows are desirable \(label true\)\. KTO scores each row's reward .* against the reference point z0, the KL estimate from mismatched prompt–completion pairs; with one label only it just pushes every reward above z0/);
      assert.match(e.message, /use `tsdpo sft` on these rows, or loss_type apo_zero_unpaired/);
      return true;
    });
    const bad = writeJsonl("bad.jsonl", [{ prompt: "a", completion: " b", label: false }, { prompt: "c", completion: " d", label: false }]);
    await assert.rejects(loadUnpairedData(bad, tok, opts), /all 2 training rows are undesirable \(label false\)/);
    // apo_zero_unpaired has no z0: desirable rows alone are its intended use
    await loadUnpairedData(path, tok, { ...opts, kl: false });
  });

  test("unbalanced labels: TRL's note on desirable_weight and undesirable_weight (KTO Eq. 8), none when balanced", () => {
    const rows = [row(1, true), row(2, true), row(3, true), row(4, false)];
    // 3 desirable, 1 undesirable: desirable_weight in [1·1/3, 1/3·1.33] = [0.33, 0.44], or undesirable_weight in [3/1.33, 3] = [2.26, 3]
    assert.equal(
      weightNote(rows, { desirable: 1, undesirable: 1 }),
      "note: 3 desirable and 1 undesirable rows with desirable_weight 1 and undesirable_weight 1: KTO (Eq. 8) wants " +
        "desirable_weight·3 / (undesirable_weight·1) between 1 and 4/3; set EITHER desirable_weight in [0.33, 0.44] or undesirable_weight in [2.26, 3] (not both)",
    );
    assert.equal(weightNote(rows, { desirable: 0.4, undesirable: 1 }), null);
    assert.equal(weightNote(rows, { desirable: 1, undesirable: 2.5 }), null);
    assert.equal(weightNote([row(1, true), row(2, false)], { desirable: 5, undesirable: 1 }), null, "TRL says nothing when the counts are equal");
  });

  test("a file of pairs without unpair: true says to set it", async () => {
    await assert.rejects(loadUnpairedData(fixture("train", "pairs.jsonl"), tok, opts), /this is a file of preference pairs .* set unpair: true/);
    // columnar files say it from their columns, before any row
    const csv = join(tmp, "pairs.csv");
    writeFileSync(csv, "prompt,chosen,rejected\nTom ran.,He fell.,He flew.\n");
    await assert.rejects(loadUnpairedData(csv, tok, opts), /pairs\.csv: holds preference pairs \(columns "chosen" and "rejected"\).* set unpair: true/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The trainer

const BASE = {
  model: storiesGguf, data: fixture("train", "pairs.jsonl"), unpair: true, backend: testBackendName, max_length: 48,
  learning_rate: 1e-3, lr_scheduler_type: "linear", seed: 5, loss_type: "kto", beta: 0.5, save_minutes: 0,
};
type Row = Record<string, number>;
const metricsOf = (dir: string): Row[] => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Row);

describe("KTO in the trainer", () => {
  test("kto_kl batch: TRL's metrics every step and at eval; the loss falls", async () => {
    const dir = join(tmp, "batch");
    await train(resolveTrainConfig({ ...BASE, per_device_train_batch_size: 4, max_steps: 8, eval_size: 4, eval_steps: 4, output_dir: dir }, "t"), null, { quiet: true });
    const rows = metricsOf(dir);
    const tr = rows.filter((r) => "loss" in r);
    // a step whose rows all have one label logs no metric of the other (TRL neither)
    for (const k of ["kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected", "loss", "num_tokens"])
      assert.ok(tr.some((r) => k in r), `no train row has ${k}: ${Object.keys(tr[0]!)}`);
    assert.ok(tr.every((r) => "kl" in r && "loss" in r && !("rewards/accuracies" in r)), "KTO has no pairs to rank");
    const ev = rows.filter((r) => "eval_loss" in r);
    assert.deepEqual(ev.map((r) => r.step), [4, 8]);
    assert.ok("eval_kl" in ev[0]!);
    assert.ok(tr.at(-1)!.loss! < tr[0]!.loss!, `loss ${tr[0]!.loss} -> ${tr.at(-1)!.loss}`);
    assert.ok(tr.every((r) => r.kl! >= 0));
  });

  test("kto_kl running with a batch of one: resumed from a checkpoint, the run ends with the same bytes", async () => {
    const cfg = { ...BASE, kto_kl: "running", per_device_train_batch_size: 1, gradient_accumulation_steps: 2, max_steps: 6, save_steps: 2, save_total_limit: null };
    const whole = join(tmp, "whole");
    await train(resolveTrainConfig({ ...cfg, output_dir: whole }, "t"), null, { quiet: true });
    // the same run, cut back to its step-2 checkpoint, then resumed
    const cut = join(tmp, "cut");
    cpSync(whole, cut, { recursive: true });
    for (const d of ["final", "checkpoints/step-4", "checkpoints/step-6", "summary.json"]) rmSync(join(cut, d), { recursive: true, force: true });
    const state2 = JSON.parse(readFileSync(join(cut, "checkpoints", "step-2", "trainer_state.json"), "utf8")) as { lossState: LossState };
    assert.equal(state2.lossState.ktoKl!.updates, 4, "two steps of two micro-batches each update the average");
    await train(resolveTrainConfig(JSON.parse(readFileSync(join(cut, "config.json"), "utf8")), "t"), cut, { resume: true, quiet: true });
    for (const f of ["model.safetensors", "optimizer.safetensors", "trainer_state.json"])
      assert.ok(readFileSync(join(whole, "final", f)).equals(readFileSync(join(cut, "final", f))), `final/${f} differs after the resume`);
    const strip = (rs: Row[]): Row[] => rs.map(({ tokens_per_second: _t, ...r }) => r);
    assert.deepEqual(strip(metricsOf(cut)), strip(metricsOf(whole)));
  });
});
