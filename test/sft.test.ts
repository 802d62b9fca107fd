// Supervised fine-tuning. A step's loss and every parameter gradient against the float64 PyTorch reference of
// tools/sft_fixture.py, on two chat-templated conversations with each mask setting (all tokens, assistant_only_loss,
// completion_only_loss), unpacked and packed into one row; the masks the data path makes; packing; the predicted
// tokens' entropy and accuracy against the full logits; a run resumed from a checkpoint ending with the bytes of an
// uninterrupted one; DPO started from an SFT run folder (LoRA: base + the SFT adapter); the errors a user meets.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "../src/backend/contract.js";
import { jsBackend } from "../src/backend/js/kernels.js";
import { packSft } from "../src/data/pack.js";
import { type TokenizedSft, loadSftData, packSequences, trainedTokens } from "../src/data/sft.js";
import { TsdpoError } from "../src/errors.js";
import { llamaConfigFromHf } from "../src/io/hfconfig.js";
import { loadModel } from "../src/io/load.js";
import { hfTensorName } from "../src/io/names.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createActivations, createGradients, createModel, forwardPacked, logitsOf, type Model } from "../src/model/decoder.js";
import { nllLoss } from "../src/loss/sft.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { resolveSftConfig } from "../src/train/sftconfig.js";
import { type SftEngine, sft, sftMicroBatch } from "../src/train/sft.js";
import { train } from "../src/train/train.js";
import { loadTokenizer } from "../src/tokenizer/index.js";
import { SETTINGS, type SftFixtureInputs, sftFixtureInputs } from "./sft-fixture.js";
import { assertAllClose, fixture, storiesGguf, testBackend, testBackendName } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-sft-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
// the CLI of the tree these tests were built into
const cli = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli", "main.js");
const stories = loadModel(storiesGguf);

function writeJsonl(name: string, rows: unknown[]): string {
  const p = join(tmp, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return p;
}

const seq = (ids: number[], trained: number[]): TokenizedSft => ({
  source: { file: "t", format: "jsonl", line: 1, index: 0 }, ids: Int32Array.from(ids), trained: Uint8Array.from(trained), truncated: false,
});

// ---------------------------------------------------------------------------------------------------------------
// Against PyTorch

function fixtureModel(ctor: Float32ArrayConstructor | Float64ArrayConstructor) {
  const path = fixture("torch", "sft.safetensors");
  const st = readSafetensors(path);
  assert.equal(st.metadata.generator, "tools/sft_fixture.py");
  const model = createModel(llamaConfigFromHf(JSON.parse(st.metadata.config!), path), ctor);
  for (const e of model.entries) model.params.set(st.tensors.get(hfTensorName(e.name, model.cfg.family))!.data as Float32Array, e.offset);
  return { st, model, inputs: JSON.parse(st.metadata.inputs!) as SftFixtureInputs, ref: JSON.parse(st.metadata.sft!) as Record<string, Record<string, number>> };
}

function engineFor(be: Backend, model: Model, rows: number, T: number): SftEngine {
  return { be, policy: model, acts: createActivations(model, rows, T), grads: createGradients(model), dropoutSeed: null };
}

describe("SFT step against float64 PyTorch (tools/sft_fixture.py)", () => {
  test("the fixture's inputs are what tsdpo's data path makes of the chat-templated conversations today", () => {
    const { inputs } = fixtureModel(Float64Array);
    assert.deepEqual(sftFixtureInputs(stories.tokenizer), inputs);
    // the masks differ as the settings say: every token after the first, the assistant turns, the last answer
    const [a, b] = inputs.ids.map((x) => x.length);
    assert.deepEqual(inputs.trained.all.map((m) => m.reduce((x, y) => x + y, 0)), [a! - 1, b! - 1]);
    const count = (s: (typeof SETTINGS)[number]): number => inputs.trained[s].flat().reduce((x, y) => x + y, 0);
    assert.ok(count("completion_only") < count("assistant_only") && count("assistant_only") < count("all"));
  });

  const cases = [[Float64Array, jsBackend, 1e-9, 1e-9, 0], [Float32Array, testBackend(), 1e-5, 1e-4, 1e-3]] as const;
  for (const [ctor, be, lossTol, atol, rtol] of cases)
    for (const setting of SETTINGS)
      test(`${setting}: loss, metrics and every gradient, unpacked and packed (${ctor.name}, ${be.name})`, () => {
        const { st, model, inputs, ref } = fixtureModel(ctor);
        const seqs = inputs.ids.map((ids, i) => seq(ids, inputs.trained[setting][i]!));
        const stepTokens = seqs.reduce((n, s) => n + trainedTokens(s), 0);
        const T = seqs[0]!.ids.length + seqs[1]!.ids.length;
        for (const rows of [[[seqs[0]!], [seqs[1]!]], [[seqs[0]!, seqs[1]!]]]) {
          const e = engineFor(be, model, 2, T);
          const r = sftMicroBatch(e, rows, stepTokens);
          const what = `${setting} ${rows.length === 1 ? "packed" : "unpacked"}`;
          assert.ok(Math.abs(r.loss - ref[setting]!.loss!) < lossTol, `${what}: loss ${r.loss} vs ${ref[setting]!.loss}`);
          assert.ok(Math.abs(r.metrics.entropy! - ref[setting]!.entropy!) < lossTol * 10, `${what}: entropy ${r.metrics.entropy} vs ${ref[setting]!.entropy}`);
          assert.equal(r.metrics.mean_token_accuracy, ref[setting]!.mean_token_accuracy);
          assert.equal(r.trained, stepTokens);
          for (const en of model.entries) {
            const want = st.tensors.get(`${setting}.grad.${hfTensorName(en.name, model.cfg.family)}`)!.data as Float64Array;
            assertAllClose(e.grads!.grads.subarray(en.offset, en.offset + en.size), want, atol, rtol, `${what} grad ${en.name}`);
          }
        }
      });

  test("packing gives the same loss and gradients as unpacked rows (float64: to rounding)", () => {
    const { model, inputs } = fixtureModel(Float64Array);
    const seqs = inputs.ids.map((ids, i) => seq(ids, inputs.trained.assistant_only[i]!));
    const T = seqs[0]!.ids.length + seqs[1]!.ids.length;
    const [u, p] = [engineFor(jsBackend, model, 2, T), engineFor(jsBackend, model, 2, T)];
    const ru = sftMicroBatch(u, [[seqs[0]!], [seqs[1]!]], 53);
    const rp = sftMicroBatch(p, [[seqs[1]!, seqs[0]!]], 53); // the other order in the row, too
    assert.ok(Math.abs(ru.loss - rp.loss) < 1e-12);
    assertAllClose(p.grads!.grads, u.grads!.grads, 1e-12, 1e-9, "packed vs unpacked gradients");
    assert.deepEqual([ru.tokens, rp.tokens], [T, T]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Pieces

describe("SFT pieces", () => {
  test("packSft: the second sequence of a row attends to itself alone, positions restart, trained tokens only", () => {
    const a = seq([1, 10, 11], [0, 0, 1]);
    const b = seq([1, 20, 21, 22], [0, 1, 1, 0]);
    const pk = packSft([[a, b], [a]]);
    assert.equal(pk.T, 7);
    assert.deepEqual([...pk.branch!], [0, 3, 7, 7]);
    assert.deepEqual([...pk.pos.subarray(0, 7)], [0, 1, 2, 0, 1, 2, 3]);
    // token 11 at flat 2 is predicted at 1; 20, 21 at 4, 5 from 3, 4; row 1's 11 from 7 + 1
    assert.deepEqual([...pk.rows], [1, 3, 4, 8]);
    assert.deepEqual([...pk.targets], [11, 20, 21, 11]);
    assert.equal(pk.tokens, 10);
    assert.equal(packSft([[a], [b]]).branch, null, "no row packs two: no branch");
  });

  test("packSequences: best fit decreasing, at most two a row, never over max_length", () => {
    const lens = [9, 3, 7, 5, 2, 6, 10];
    const seqs = lens.map((n, i) => seq(Array.from({ length: n }, () => i), Array.from({ length: n }, (_, t) => (t ? 1 : 0))));
    const rows = packSequences(seqs, 12);
    // longest first: 10 (+2 → 12), 9 (+3 → 12), 7 (+5 → 12), 6 alone
    assert.deepEqual(rows.map((r) => r.map((s) => s.ids.length)), [[10, 2], [9, 3], [7, 5], [6]]);
    assert.ok(rows.every((r) => r.length <= 2 && r.reduce((n, s) => n + s.ids.length, 0) <= 12));
  });

  test("nllLoss: the batch's mean per token, and the step's gradient −1/N", () => {
    const r = nllLoss([-1, -2, -3], 6);
    assert.equal(r.loss, 2);
    assert.equal(r.dlogp, -1 / 6);
    assert.throws(() => nllLoss([-1, -2], 1), /2 tokens in a micro-batch of a step with 1/);
  });

  test("the fused LM head's entropy and argmax at every wanted position, as the full logits give them", () => {
    const be = testBackend();
    const model = stories.model;
    const ids = Int32Array.from(stories.tokenizer.encode("Once upon a time there was a little girl named Lily. She liked to play."));
    const T = ids.length;
    const acts = createActivations(model, 1, T);
    const rows = Int32Array.from({ length: T - 1 }, (_, t) => t);
    forwardPacked(be, model, acts, { ids, pos: Int32Array.from({ length: T }, (_, t) => t), branch: null, rows, targets: ids.subarray(1), R: 1, T, M: T - 1 });
    const { entropy, argmax } = acts;
    const logits = logitsOf(be, model, acts);
    const V = model.cfg.V;
    let hits = 0;
    for (let t = 0; t < T - 1; t++) {
      const z = Array.from(logits.subarray(t * V, t * V + V));
      const max = Math.max(...z);
      const lse = max + Math.log(z.reduce((s, x) => s + Math.exp(x - max), 0));
      const h = -z.reduce((s, x) => s + Math.exp(x - lse) * (x - lse), 0);
      assert.ok(Math.abs(entropy[t]! - h) < 1e-4, `entropy at ${t}: ${entropy[t]} vs ${h}`);
      assert.equal(argmax[t], z.indexOf(max), `argmax at ${t}`);
      hits += argmax[t] === ids[t + 1] ? 1 : 0;
    }
    assert.ok(hits > 3 && hits < T - 1, `a trained model gets some tokens right, not all (${hits} of ${T - 1})`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Data

describe("SFT data", () => {
  const tok = stories.tokenizer;
  const opts = { textField: "text", completionOnlyLoss: null, assistantOnlyLoss: false, packing: false };
  const decodeTrained = (s: TokenizedSft): string => tok.decode([...s.ids].filter((_, t) => s.trained[t]));

  test("prompt-completion: the completion (and its EOS) counts by default, everything with completion_only_loss false", async () => {
    const path = writeJsonl("pc.jsonl", [{ prompt: "Tom had a ball.", completion: " He threw it." }]);
    const on = (await loadSftData(path, tok, opts)).train[0]![0]!;
    assert.equal(decodeTrained(on).trim(), "He threw it.");
    assert.equal(on.ids.at(-1), tok.eosId, "EOS ends the sequence and counts");
    assert.equal(on.trained.at(-1), 1);
    const off = (await loadSftData(path, tok, { ...opts, completionOnlyLoss: false })).train[0]![0]!;
    assert.deepEqual([...off.ids], [...on.ids], "the mask does not change the ids");
    assert.equal(trainedTokens(off), off.ids.length - 1, "every token after the first");
  });

  test("conversations with a real template (Qwen3): every token, or only the assistant's turns with their end marker", async () => {
    const qwen = loadTokenizer(fixture("tokenizers", "qwen3"));
    const path = writeJsonl("chat.jsonl", [{ messages: [{ role: "user", content: "Hi there" }, { role: "assistant", content: "Hello! How can I help?" }] }]);
    const all = (await loadSftData(path, qwen, opts)).train[0]![0]!;
    const asst = (await loadSftData(path, qwen, { ...opts, assistantOnlyLoss: true })).train[0]![0]!;
    assert.deepEqual([...asst.ids], [...all.ids]);
    assert.equal(trainedTokens(all), all.ids.length - 1);
    const text = qwen.decode([...asst.ids].filter((_, t) => asst.trained[t]));
    assert.match(text, /^(<think>\s*<\/think>\s*)?Hello! How can I help\?$/, text);
    // the turn's end marker counts too (decode leaves special tokens out), and ends the sequence as its end token
    const imEnd = qwen.encodeWithSpecials("<|im_end|>", { continuation: true });
    assert.equal(imEnd.length, 1);
    assert.deepEqual([asst.ids.at(-1), asst.trained.at(-1)], [imEnd[0], 1]);
    assert.ok(!qwen.decode([...asst.ids].filter((_, t) => !asst.trained[t])).includes("Hello"), "the answer is all counted");
  });

  test("text rows: every token; truncation keeps the start (TRL SFT's default) or BOS and the end; nothing left to train is a drop", async () => {
    const path = writeJsonl("text.jsonl", [{ text: "Once upon a time there was a girl." }, { prompt: "a b c d e f g h i j k l", completion: " m" }]);
    const d = await loadSftData(path, tok, { ...opts, maxLength: 6 });
    assert.equal(d.train.length, 1);
    const s = d.train[0]![0]!;
    assert.equal(s.ids.length, 6);
    assert.ok(s.truncated && s.ids[0] === tok.bosId);
    assert.match(d.summary.join("\n"), /1 dropped \(nothing-to-train 1\)/);
    const end = (await loadSftData(path, tok, { ...opts, maxLength: 6, truncationMode: "keep_end" })).train;
    assert.equal(end.length, 2, "keep_end keeps the completion of the long prompt");
    assert.equal(end[0]![0]!.ids[0], tok.bosId);
    assert.equal(end[0]![0]!.ids.at(-1), tok.eosId);
  });

  test("a conversation without an assistant turn under assistant_only_loss is one line naming file, line and field", async () => {
    const path = writeJsonl("noasst.jsonl", [
      { messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] },
      { messages: [{ role: "system", content: "s" }, { role: "user", content: "Hi" }] },
    ]);
    const qwen = loadTokenizer(fixture("tokenizers", "qwen3"));
    await assert.rejects(loadSftData(path, qwen, { ...opts, assistantOnlyLoss: true }), (e: unknown) => {
      assert.ok(e instanceof TsdpoError);
      assert.equal(e.message.split("\n").length, 1, e.message);
      assert.match(e.message, /noasst\.jsonl:2: messages: has no assistant turn \(roles: system, user\), and assistant_only_loss is on, so none of its tokens would be trained/);
      return true;
    });
    const skipped = await loadSftData(path, qwen, { ...opts, assistantOnlyLoss: true, skipInvalid: true });
    assert.equal(skipped.invalid.length, 1);
    assert.equal((await loadSftData(path, qwen, opts)).train.length, 2, "without assistant_only_loss every token counts");
  });

  test("keys that do not fit the rows are refused with the reason", async () => {
    const text = writeJsonl("t.jsonl", [{ text: "Tom ran." }]);
    await assert.rejects(loadSftData(text, tok, { ...opts, assistantOnlyLoss: true }), /t\.jsonl:1: assistant_only_loss is for conversations/);
    await assert.rejects(loadSftData(text, tok, { ...opts, completionOnlyLoss: true }), /completion_only_loss is for prompt-completion rows/);
    await assert.rejects(loadSftData(fixture("train", "pairs.jsonl"), tok, opts), /this is a file of preference pairs .* write them as \{"prompt", "completion"\} rows/);
    await assert.rejects(loadSftData(writeJsonl("chat2.jsonl", [{ messages: [{ role: "user", content: "a" }] }]), tok, opts), /needs the model's chat template/);
    await assert.rejects(loadSftData(text, tok, { ...opts, packing: true }), /packing: true .* max_length must be set/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The trainer

const rows = Array.from({ length: 14 }, (_, i) => ({ prompt: `Tom had ${i} red balls.`, completion: ` He gave ${i % 3} to Lily.` }));
const BASE = {
  model: storiesGguf, backend: testBackendName, max_length: 64, learning_rate: 1e-3, seed: 3, save_minutes: 0,
  per_device_train_batch_size: 2, lr_scheduler_type: "linear", warmup_steps: 1,
};
type Row = Record<string, number>;
const metricsOf = (dir: string): Row[] => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Row);
const strip = (rs: Row[]): Row[] => rs.map(({ tokens_per_second: _t, ...r }) => r);

describe("SFT in the trainer", () => {
  test("TRL's metrics; the loss falls; a resumed run ends with the bytes of an uninterrupted one (packing, accumulation, eval)", async () => {
    const data = writeJsonl("resume.jsonl", rows);
    const cfg = { ...BASE, data, packing: true, gradient_accumulation_steps: 2, max_steps: 6, save_steps: 2, save_total_limit: null, eval_size: 2, eval_steps: 3 };
    const whole = join(tmp, "sft-whole");
    await sft(resolveSftConfig({ ...cfg, output_dir: whole }, "t"), null, { quiet: true });
    const m = metricsOf(whole);
    const tr = m.filter((r) => "loss" in r);
    for (const k of ["loss", "mean_token_accuracy", "entropy", "num_tokens", "grad_norm", "learning_rate"]) assert.ok(k in tr[0]!, `no ${k}`);
    assert.deepEqual(m.filter((r) => "eval_loss" in r).map((r) => r.step), [3, 6]);
    assert.ok("eval_mean_token_accuracy" in m.find((r) => "eval_loss" in r)!);
    assert.ok(tr.at(-1)!.loss! < tr[0]!.loss! / 2, `loss ${tr[0]!.loss} -> ${tr.at(-1)!.loss}`);
    assert.ok(tr.at(-1)!.num_tokens! > tr[0]!.num_tokens!);
    const saved = JSON.parse(readFileSync(join(whole, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(saved.trainer, "sft");
    assert.equal(saved.completion_only_loss, null);

    const cut = join(tmp, "sft-cut");
    cpSync(whole, cut, { recursive: true });
    for (const d of ["final", "checkpoints/step-4", "checkpoints/step-6", "summary.json"]) rmSync(join(cut, d), { recursive: true, force: true });
    await sft(resolveSftConfig(saved, "t"), cut, { resume: true, quiet: true });
    for (const f of ["model.safetensors", "optimizer.safetensors", "trainer_state.json"])
      assert.ok(readFileSync(join(whole, "final", f)).equals(readFileSync(join(cut, "final", f))), `final/${f} differs after the resume`);
    assert.deepEqual(strip(metricsOf(cut)), strip(m));
  });

  test("gradient accumulation: 2 rows × 2 micro-batches = 4 rows × 1, per token over the step", async () => {
    const data = writeJsonl("accum.jsonl", rows);
    const run = async (name: string, b: number, acc: number): Promise<Float32Array> => {
      const dir = join(tmp, name);
      await sft(resolveSftConfig({ ...BASE, data, per_device_train_batch_size: b, gradient_accumulation_steps: acc, max_steps: 2, output_dir: dir }, "t"), null, { quiet: true });
      return loadModel(join(dir, "final")).model.params as Float32Array;
    };
    assertAllClose(await run("acc-2x2", 2, 2), await run("acc-4x1", 4, 1), 2e-6, 0, "weights after two steps");
  });

  test("DPO from a LoRA SFT run folder: its adapter on the recorded base, which is also the reference (loss ln 2 at the start)", async () => {
    const data = writeJsonl("lora.jsonl", rows);
    const dir = join(tmp, "sft-lora");
    // no LoRA dropout (the adapter keeps it for the DPO run), so that the policy's first forward is the reference's
    await sft(resolveSftConfig({ ...BASE, data, use_peft: true, lora_r: 4, lora_dropout: 0, max_steps: 3, output_dir: dir }, "t"), null, { quiet: true });
    const cfg = resolveTrainConfig({ ...BASE, model: dir, data: fixture("train", "pairs.jsonl"), max_steps: 1, output_dir: join(tmp, "dpo-from-sft") }, "t");
    assert.equal(cfg.model, storiesGguf);
    assert.equal(cfg.adapter, join(dir, "final"));
    const r = await train(cfg, null, { quiet: true });
    assert.ok(Math.abs(r.lastMetrics.loss! - Math.LN2) < 1e-6, `loss at the start ${r.lastMetrics.loss}`);
    // full fine-tuning: the run folder is its final/ weights
    const full = join(tmp, "sft-full");
    await sft(resolveSftConfig({ ...BASE, data, max_steps: 1, output_dir: full }, "t"), null, { quiet: true });
    assert.equal(resolveTrainConfig({ model: full }, "t").model, join(full, "final"));
  });

  test("the CLI: sft, the list of keys, a preference key refused, resume with the other trainer refused", () => {
    const data = writeJsonl("cli.jsonl", rows);
    const config = join(tmp, "cli.json");
    writeFileSync(config, JSON.stringify({ ...BASE, data, max_steps: 2 }));
    const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000 });
    const dir = join(tmp, "cli-run");
    const ok = run("sft", config, "--output_dir", dir, "--packing");
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stderr, /sft: prompt-completion rows; the loss counts \d+ of \d+ training tokens \(completion_only_loss true/);
    assert.match(ok.stderr, /tsdpo train --model \S+ --data <preference pairs>/);
    assert.match(run("sft", "--list-keys").stdout, /assistant_only_loss +false +conversations: count only the assistant's turns/);
    const beta = run("sft", config, "--beta", "0.1");
    assert.equal(beta.status, 2);
    assert.match(beta.stderr, /"beta" is a key of preference training \(`tsdpo train`\); SFT has no preference loss/);
    assert.match(run("train", "--resume", dir).stderr, /this is an SFT run; continue it with `tsdpo sft --resume/);
  });
});
