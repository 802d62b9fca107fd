// Side-by-side sampling (src/sample/sideBySide.ts, tsdpo sample): the seed contract (same seed, same samples; sample
// j of prompt i uses one stream for both models), identical columns when the model is its own reference, prompt
// files in both forms with their errors, chat prompts through the template, and the text and JSON output.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import { exportHf } from "../src/export/hf.js";
import { loadModel } from "../src/io/load.js";
import { generate, sampleToken, topKOrder } from "../src/sample/generate.js";
import {
  formatSideBySide,
  promptText,
  readPromptsFile,
  sampleSeed,
  sideBySide,
  type SideBySideOptions,
  wrap,
} from "../src/sample/sideBySide.js";
import { Rng } from "../src/rng.js";
import { perturbedStories } from "./gguf-export-models.js";
import { repoRoot, storiesGguf, testBackend } from "./helpers.js";

const be = testBackend();
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-sample-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const file = (name: string, text: string): string => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};

const stories = loadModel(storiesGguf);
const tuned = perturbedStories();
const opts: SideBySideOptions = { n: 3, maxNewTokens: 16, temperature: 1, topK: 0, topP: 1, seed: 5 };
const prompts = readPromptsFile(file("p.txt", "Once upon a time\n\nThe little cat\r\nTom had a red ball.\n"));

test("a text prompts file gives one prompt per non-blank line, with file:line sources", () => {
  assert.deepEqual(prompts, [
    { prompt: "Once upon a time", source: `${join(tmp, "p.txt")}:1` },
    { prompt: "The little cat", source: `${join(tmp, "p.txt")}:3` },
    { prompt: "Tom had a red ball.", source: `${join(tmp, "p.txt")}:4` },
  ]);
});

test("the same seed gives the same samples; another seed, other samples; the n samples of a prompt differ", () => {
  const a = sideBySide(be, tuned, stories, prompts, opts);
  const b = sideBySide(be, tuned, stories, prompts, opts);
  assert.deepEqual(a, b);
  const c = sideBySide(be, tuned, stories, prompts, { ...opts, seed: 6 });
  assert.notDeepEqual(c.map((r) => r.policy), a.map((r) => r.policy));
  for (const r of a) {
    assert.equal(r.policy.length, 3);
    assert.equal(new Set(r.policy).size, 3, `policy samples of "${r.prompt}" repeat: ${JSON.stringify(r.policy)}`);
    assert.equal(new Set(r.reference).size, 3);
  }
  // a tuned model writes other text than its reference from the same streams
  assert.ok(a.some((r) => r.policy.some((s, j) => s !== r.reference[j])));
});

test("with the model as its own reference the two columns are identical", () => {
  for (const r of sideBySide(be, tuned, tuned, prompts, opts)) assert.deepEqual(r.policy, r.reference);
  // also when the reference is a separately loaded copy of the same file
  for (const r of sideBySide(be, stories, loadModel(storiesGguf), prompts, opts)) assert.deepEqual(r.policy, r.reference);
});

test("sample j of prompt i is generate() from the prompt ids with the RNG seeded by sampleSeed(seed, i, j)", () => {
  const rows = sideBySide(be, tuned, stories, prompts, opts);
  const tok = stories.tokenizer;
  for (const [i, j] of [[0, 0], [1, 2], [2, 1]] as const) {
    const ids = [tok.bosId!, ...tok.encode(prompts[i]!.prompt as string)];
    for (const [m, col] of [[tuned, "policy"], [stories, "reference"]] as const) {
      const g = generate(be, m.model, ids, [tok.eosId!], opts, new Rng(sampleSeed(5, i, j)));
      // the completion is what the new tokens add to the decoded prompt (SentencePiece drops a leading space
      // only at the start of a text, so "Once upon a time" + ", there" keeps its words apart)
      const whole = tok.decode([...ids, ...g.ids]);
      assert.equal(rows[i]![col][j], whole.slice(tok.decode(ids).length), `${col} ${i}/${j}`);
    }
  }
  const seeds = new Set<number>();
  for (let s = 0; s < 3; s++) for (let i = 0; i < 20; i++) for (let j = 0; j < 20; j++) seeds.add(sampleSeed(s, i, j));
  assert.equal(seeds.size, 1200, "sample seeds collide");
});

test("greedy (temperature 0) gives n equal samples, the model's greedy continuation", () => {
  const rows = sideBySide(be, stories, stories, prompts.slice(0, 1), { ...opts, temperature: 0, n: 2, maxNewTokens: 12 });
  assert.equal(rows[0]!.policy[0], rows[0]!.policy[1]);
  assert.ok(rows[0]!.policy[0]!.startsWith(", there was a little"), rows[0]!.policy[0]);
});

test("JSON Lines prompts: strings and chat messages rendered with the model's template", () => {
  const hfDir = join(tmp, "chat-model");
  exportHf(stories, hfDir);
  writeFileSync(
    join(hfDir, "chat_template.jinja"),
    "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
  );
  const chat = loadModel(hfDir);
  const ps = readPromptsFile(
    file("p.jsonl", '{"prompt": "Once upon a time"}\n\n{"prompt": [{"role": "user", "content": "Tell a story"}], "id": 7}\n'),
  );
  assert.deepEqual(ps.map((p) => p.prompt), ["Once upon a time", [{ role: "user", content: "Tell a story" }]]);
  assert.equal(promptText(chat.tokenizer, ps[1]!), "<s>user: Tell a story\nassistant:");
  const rows = sideBySide(be, chat, chat, ps, { ...opts, n: 1, temperature: 0, maxNewTokens: 6 });
  const tok = chat.tokenizer;
  // BOS once: the template's "<s>" is the BOS token, not text followed by another BOS
  const ids = [tok.bosId!, ...tok.encodeWithSpecials("user: Tell a story\nassistant:")];
  const g = generate(be, chat.model, ids, [tok.eosId!], { ...opts, temperature: 0, maxNewTokens: 6 });
  assert.equal(rows[1]!.policy[0], tok.decode([...ids, ...g.ids]).slice(tok.decode(ids).length));
  // without a template, chat prompts are an error naming the line
  assert.throws(() => sideBySide(be, stories, stories, ps, opts), (e: unknown) => e instanceof TsdpoError && e.message.startsWith(`${join(tmp, "p.jsonl")}:3: the prompt is a list of chat messages but the model has no chat template`));
});

test("malformed prompt files: the message names file:line and says what to write", () => {
  const cases: [string, string, RegExp][] = [
    ["bad.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n', /bad\.jsonl:2: not valid JSON/],
    ["missing.jsonl", '{"prompt": "a"}\n{"text": "b"}\n', /missing\.jsonl:2: field "prompt" is missing; write \{"prompt": "text"\}/],
    ["number.jsonl", '{"prompt": 3}\n', /number\.jsonl:1: field "prompt" is not a string or a list of messages/],
    ["msg.jsonl", '{"prompt": [{"role": "user"}]}\n', /msg\.jsonl:1: prompt\[0\] must be a message/],
    ["array.jsonl", "[1, 2]\n", /array\.jsonl:1: expected an object/],
    ["empty.txt", "\n  \n", /empty\.txt: no prompts; write one prompt per line/],
  ];
  for (const [name, text, re] of cases) assert.throws(() => readPromptsFile(file(name, text)), re, name);
  assert.throws(() => readPromptsFile(join(tmp, "nope.txt")), /nope\.txt: cannot read the prompts file \(ENOENT\)/);
  const long = readPromptsFile(file("long.txt", "once ".repeat(3000)));
  assert.throws(() => sideBySide(be, stories, stories, long, opts), /long\.txt:1: the prompt is \d+ tokens but the model's context is 2048/);
});

test("the text layout puts each sample's policy and reference side by side, wrapped to the width", () => {
  const rows = [
    { prompt: "P", policy: ["alpha beta gamma delta epsilon zeta eta theta", ""], reference: ["one\ntwo", "x".repeat(50)] },
  ];
  const text = formatSideBySide(rows, 43); // columns of 20
  const lines = text.split("\n");
  for (const l of lines) assert.ok([...l].length <= 43, `too wide: ${JSON.stringify(l)}`);
  assert.deepEqual(lines, [
    "══ prompt 1/1 " + "═".repeat(43 - 14),
    "P",
    "── sample 1/2 " + "─".repeat(20 - 14) + "─┬─" + "─".repeat(20),
    "policy               │ reference",
    "alpha beta gamma     │ one",
    "delta epsilon zeta   │ two",
    "eta theta            │",
    "── sample 2/2 " + "─".repeat(20 - 14) + "─┬─" + "─".repeat(20),
    "policy               │ reference",
    "(empty completion)   │ xxxxxxxxxxxxxxxxxxxx",
    "                     │ xxxxxxxxxxxxxxxxxxxx",
    "                     │ xxxxxxxxxx",
    "",
  ]);
  assert.deepEqual(wrap("  indented start\n\nend", 10), ["  indented", "start", "", "end"]);
});

test("tsdpo sample: --json lines equal to the library's samples, and the text layout", () => {
  const cli = join(repoRoot, "dist", "src", "cli", "main.js");
  const promptsPath = join(tmp, "p.txt");
  const args = ["sample", "--model", storiesGguf, "--reference", storiesGguf, "--prompts", promptsPath, "--n", "2", "--max-new-tokens", "10", "--seed", "3", "--temperature", "0.9"];
  const run = (...extra: string[]) => spawnSync(process.execPath, [cli, ...args, ...extra], { encoding: "utf8", timeout: 60_000 });
  const a = run("--json");
  assert.equal(a.status, 0, a.stderr);
  const rows = a.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.length, 3);
  assert.deepEqual(Object.keys(rows[0]), ["prompt", "policy", "reference"]);
  assert.equal(rows[1].prompt, "The little cat");
  for (const r of rows) {
    assert.equal(r.policy.length, 2);
    assert.deepEqual(r.policy, r.reference);
  }
  const lib = sideBySide(be, stories, stories, prompts, { n: 2, maxNewTokens: 10, seed: 3, temperature: 0.9, topK: 0, topP: 1 });
  assert.deepEqual(rows, lib);
  const t = run();
  assert.equal(t.status, 0, t.stderr);
  assert.ok(t.stdout.endsWith(formatSideBySide(lib, 100)), "text output is not the library's layout of the same samples");
  assert.match(t.stdout, /══ prompt 2\/3 ═+\nThe little cat\n── sample 1\/2 ─+┬─+\npolicy +│ reference\n/);
  const bad = spawnSync(process.execPath, [cli, "sample", "--model", storiesGguf, "--prompts", promptsPath], { encoding: "utf8" });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--model, --reference and --prompts are required/);
});

/** The sampler as first written: sort all V ids, then the same top-k / top-p walk. The fast path must equal it. */
function sampleBySortingAll(logits: ArrayLike<number>, temperature: number, topK: number, topP: number, rng: Rng): number {
  const V = logits.length;
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = topK > 0 ? Math.min(topK, V) : V;
  const w = order.slice(0, k).map((id) => Math.exp((logits[id]! - logits[order[0]!]!) / temperature));
  const z = w.reduce((a, b) => a + b, 0);
  let keep = k;
  if (topP < 1) {
    let cum = 0;
    for (let i = 0; i < k; i++) if ((cum += w[i]! / z) >= topP) { keep = i + 1; break; }
  }
  let u = rng.next() * w.slice(0, keep).reduce((a, b) => a + b, 0);
  for (let i = 0; i < keep; i++) if ((u -= w[i]!) < 0) return order[i]!;
  return order[keep - 1]!;
}

test("top-k selection by heap gives the full sort's first k (ties by id), and the same draws for every seed", () => {
  const r = new Rng(5);
  for (const V of [1, 7, 300, 5000]) {
    // quantised logits so that many tie
    const logits = Float32Array.from({ length: V }, () => Math.round(r.next() * 40) / 4);
    const full = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
    for (const k of [1, 2, 5, Math.max(1, V >> 1), V])
      assert.deepEqual(topKOrder(logits, k), full.slice(0, k), `V=${V} k=${k}`);
    for (const [topK, topP] of [[1, 1], [3, 1], [40, 0.9], [V, 0.5], [0, 0.8]] as const)
      for (let seed = 0; seed < 20; seed++) {
        const want = sampleBySortingAll(logits, 0.7, topK, topP, new Rng(seed));
        assert.equal(sampleToken(logits, { temperature: 0.7, topK, topP }, new Rng(seed)), want, `V=${V} top-k ${topK} top-p ${topP} seed ${seed}`);
      }
  }
});

test("sampled tokens follow softmax(logits / T), cut to top-k and top-p and renormalised (chi-square, 40,000 draws)", () => {
  // Pearson's statistic over the kept tokens against N·p, with p computed here from the definition; the critical
  // value of χ² at p = 0.001 for (kept − 1) degrees of freedom. Tokens outside the kept set must never be drawn.
  // A sampler that ignored the temperature, or kept one token too many or too few, lands far above the line
  // (its statistic is in the thousands at this N).
  const critical001 = [0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32]; // by degrees of freedom
  const logits = [1.2, -0.4, 2.0, 0.3, -1.5, 0.9, 1.7, -0.2];
  const N = 40_000;
  for (const [temperature, topK, topP, seed] of [[0.7, 0, 1, 1], [1.3, 3, 1, 2], [1, 0, 0.8, 3], [0.5, 5, 0.9, 4]] as const) {
    const order = logits.map((_, i) => i).sort((a, b) => logits[b]! - logits[a]!);
    const w = order.map((i) => Math.exp(logits[i]! / temperature));
    let keep = topK > 0 ? topK : logits.length;
    const zk = w.slice(0, keep).reduce((a, b) => a + b, 0);
    if (topP < 1) {
      let cum = 0;
      for (let i = 0; i < keep; i++) if ((cum += w[i]! / zk) >= topP) { keep = i + 1; break; }
    }
    const z = w.slice(0, keep).reduce((a, b) => a + b, 0);
    const expected = new Map(order.slice(0, keep).map((id, i) => [id, (N * w[i]!) / z]));
    const counts = new Array<number>(logits.length).fill(0);
    const rng = new Rng(seed);
    for (let n = 0; n < N; n++) counts[sampleToken(logits, { temperature, topK, topP }, rng)]!++;
    let chi2 = 0;
    counts.forEach((c, id) => {
      const e = expected.get(id);
      if (e === undefined) assert.equal(c, 0, `T=${temperature} k=${topK} p=${topP}: token ${id} is outside the kept set`);
      else chi2 += (c - e) ** 2 / e;
    });
    assert.ok(keep >= 2, "at least one degree of freedom");
    assert.ok(chi2 < critical001[keep - 1]!, `T=${temperature} k=${topK} p=${topP}: χ² = ${chi2.toFixed(1)} over ${keep} tokens ≥ ${critical001[keep - 1]}`);
  }
});
