// The HTML report: train() writes it, `tsdpo report` rewrites it, it carries the run's numbers, it references
// nothing outside itself, and in a real browser (headless Chromium, Debian package `chromium`) every chart draws
// without a console error.

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import type { DemoResults } from "../src/demo/demo.js";
import { type RunData, readMetrics, readRun, renderRunReport, writeDemoReport } from "../src/report/report.js";
import { repoRoot, testBackendName } from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "tsdpo-report-"));
const runDir = join(work, "run");
const cli = join(repoRoot, "dist", "src", "cli", "main.js");

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", process.env.TSDPO_CHROMIUM ?? ""].find((p) => p !== "" && existsSync(p)) ?? null;
const noChromium = chromium ? false : "headless Chromium not found (install the Debian package: apt-get install -y chromium)";

// The probe runs inside the page: it records script errors and console.error calls from the start, and after load
// reads every canvas back: how many pixels are painted at all, how many have the colour of the chart's first
// series (#1f77b4), so a chart that drew only its axes does not pass, and how many in the left third of the canvas
// have the colour of reference lines (REF_LINE_COLOR, #b8860b: ln 2, the clip threshold; their labels sit at the
// right end, so these pixels are the line's). It also reads the x-axis tick values Chart.js chose.
const PROBE = `<script>
window.__errs = [];
window.addEventListener("error", function (e) { __errs.push("error: " + e.message); });
(function () { var ce = console.error; console.error = function () { __errs.push("console.error: " + Array.prototype.join.call(arguments, " ")); ce.apply(console, arguments); }; })();
window.addEventListener("load", function () {
  var near = function (d, i, r, g, b) { return Math.abs(d[i] - r) < 30 && Math.abs(d[i + 1] - g) < 30 && Math.abs(d[i + 2] - b) < 30 && d[i + 3] > 150; };
  var out = Array.prototype.map.call(document.querySelectorAll("canvas"), function (c) {
    var d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data, painted = 0, blue = 0, ref = 0;
    for (var i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      painted++;
      if (near(d, i, 31, 119, 180)) blue++;
      if (near(d, i, 184, 134, 11) && (i / 4) % c.width < c.width / 3) ref++;
    }
    var chart = window.Chart && Chart.getChart(c);
    var xticks = chart ? chart.scales.x.ticks.map(function (t) { return t.value; }) : [];
    return { id: c.id, width: c.width, height: c.height, painted: painted, blue: blue, ref: ref, xticks: xticks };
  });
  var pre = document.createElement("pre"); pre.id = "probe-result"; pre.textContent = JSON.stringify({ errors: __errs, canvases: out });
  document.body.appendChild(pre);
});
</script>`;

interface ProbeResult {
  errors: string[];
  canvases: { id: string; width: number; height: number; painted: number; blue: number; ref: number; xticks: number[] }[];
}

/** Renders `html` (with the probe inserted first in <head>) in headless Chromium and returns what the probe saw. */
function renderInChromium(html: string, name: string): ProbeResult {
  const file = join(work, `${name}.probe.html`);
  writeFileSync(file, html.replace("<head>", `<head>${PROBE}`));
  const profile = mkdtempSync(join(work, "chromium-profile-"));
  const dom = execFileSync(
    chromium!,
    [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-extensions", `--user-data-dir=${profile}`, "--window-size=1280,2000",
      "--virtual-time-budget=5000", "--dump-dom", `file://${file}`,
    ],
    { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 },
  );
  const m = /<pre id="probe-result">([\s\S]*?)<\/pre>/.exec(dom);
  assert.ok(m, `${name}: the probe left no result in the page (a script failed before load?)`);
  const text = m[1]!.replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  return JSON.parse(text) as ProbeResult;
}

interface ChartData {
  charts: { id: string; series: { label: string; points: [number, number][] }[] }[];
}

function embeddedData(html: string): ChartData {
  const m = /<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(m, "report-data element");
  return JSON.parse(m[1]!) as ChartData;
}

/** Charts that have data get a canvas; the others a note. */
const drawable = (d: ChartData): string[] => d.charts.filter((c) => c.series.some((s) => s.points.length > 0)).map((c) => `chart-${c.id}`);

function assertOffline(html: string, name: string): void {
  // No address of anything outside the file: no scheme-qualified URL, protocol-relative src/href, CSS import or
  // url(), and no source map for devtools to fetch.
  const bad: [RegExp, string][] = [
    [/\b(?:https?|ftp|wss?):\/\//i, "a network URL"],
    [/\s(?:src|href|srcset|action|poster)\s*=/i, "an attribute that loads a resource"],
    [/sourceMappingURL/i, "a source-map reference"],
    [/<(?:link|iframe|img|object|embed)\b/i, "an element that loads a resource"],
  ];
  const css = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]).join("\n");
  assert.doesNotMatch(css, /@import|url\s*\(/i, `${name}: the stylesheet imports or loads nothing`);
  for (const [re, what] of bad) {
    const m = re.exec(html);
    assert.equal(m, null, `${name} contains ${what}: …${m ? html.slice(Math.max(0, m.index - 60), m.index + 60) : ""}…`);
  }
}

describe("run report", () => {
  before(async () => {
    const data = join(work, "pairs.jsonl");
    const rows = [
      ["Once upon a time, there was a little dog.", " The dog was happy and played all day.", " The dog was sad and cried."],
      ["Lily went to the park.", " She had fun with her friends.", " She fell and hurt her knee."],
      ["Tom found a box.", " Inside was a nice toy.", " Inside was a broken cup."],
      ["The sun was shining.", " Everyone smiled.", " It started to rain hard."],
      ["One day, a bird sang.", " The song was lovely.", " The song was scary."],
      ["Sam had a red ball.", " He shared it with Amy.", " He lost it in the river."],
    ];
    writeFileSync(data, rows.map(([prompt, chosen, rejected]) => JSON.stringify({ prompt, chosen, rejected })).join("\n") + "\n");
    const cfg = resolveTrainConfig(
      { data, eval_size: 2, output_dir: runDir, max_steps: 3, per_device_train_batch_size: 2, learning_rate: 1e-3, eval_steps: 1, backend: testBackendName, beta: 0.1 },
      "report test",
    );
    await train(cfg, runDir, { quiet: true });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it("train() writes report.html with the run's metrics, samples and config, and nothing it would fetch", () => {
    const path = join(runDir, "report.html");
    assert.ok(existsSync(path), "report.html at the end of train()");
    const html = readFileSync(path, "utf8");
    assertOffline(html, "report.html");
    assert.match(html, /Chart\.js v\d+\.\d+\.\d+/, "Chart.js inlined with its licence header");

    // The charts carry exactly the logged numbers.
    const d = embeddedData(html);
    const metrics = readMetrics(join(runDir, "metrics.jsonl"));
    const trainRows = metrics.filter((r) => "loss" in r);
    const evalRows = metrics.filter((r) => "eval_loss" in r);
    assert.equal(trainRows.length, 3);
    assert.equal(evalRows.length, 3);
    const series = (id: string, label: string): [number, number][] => d.charts.find((c) => c.id === id)!.series.find((s) => s.label === label)!.points;
    assert.deepEqual(series("loss", "loss"), trainRows.map((r) => [r.step, r.loss]));
    assert.deepEqual(series("rewards", "margin"), trainRows.map((r) => [r.step, r["rewards/margins"]]));
    assert.deepEqual(series("learning_rate", "learning_rate"), trainRows.map((r) => [r.step, r.learning_rate]));
    assert.deepEqual(series("eval_accuracies", "eval_rewards/accuracies"), evalRows.map((r) => [r.step, r["eval_rewards/accuracies"]]));
    assert.equal(drawable(d).length, 9, "loss, rewards, accuracies, grad norm, lr, tokens/s and three eval charts");

    // Samples: the run had final weights and a small model, so samples.json was written from held-out prompts.
    const samples = JSON.parse(readFileSync(join(runDir, "samples.json"), "utf8")) as { source: string; rows: { prompt: string; policy: string; reference: string }[] };
    assert.equal(samples.rows.length, 2, "both held-out prompts");
    assert.match(samples.source, /held out/);
    for (const r of samples.rows) {
      assert.ok(r.policy.length > 0 && r.reference.length > 0);
      assert.ok(html.includes(r.prompt.replace(/'/g, "&#39;").replace(/"/g, "&quot;")), "prompt shown");
    }
    // The resolved config: every key appears.
    const config = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8")) as Record<string, unknown>;
    for (const k of Object.keys(config)) assert.ok(html.includes(`<code>${k}`), `config key ${k} in the report`);
  });

  it("tsdpo report rewrites the same report; a folder that is not a run is refused", () => {
    const before = readFileSync(join(runDir, "report.html"), "utf8");
    rmSync(join(runDir, "report.html"));
    const r = spawnSync(process.execPath, [cli, "report", runDir], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), join(runDir, "report.html"));
    assert.equal(readFileSync(join(runDir, "report.html"), "utf8"), before, "same bytes: the report is a function of the folder");
    const bad = spawnSync(process.execPath, [cli, "report", work], { encoding: "utf8" });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^error: .*not a tsdpo run folder/);
  });

  it("draws every chart in headless Chromium without console errors", { skip: noChromium }, () => {
    const html = readFileSync(join(runDir, "report.html"), "utf8");
    const r = renderInChromium(html, "run");
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.canvases.map((c) => c.id).sort(), drawable(embeddedData(html)).sort());
    for (const c of r.canvases) {
      assert.ok(c.width > 100 && c.height > 100, `${c.id}: laid out (${c.width}×${c.height})`);
      assert.ok(c.painted > 2000, `${c.id}: ${c.painted} painted pixels`);
      assert.ok(c.blue > 30, `${c.id}: the first series drawn (${c.blue} pixels of its colour)`);
      // Steps are whole numbers, and a 3-step run left to itself gets ticks at 1, 1.2, 1.4, …
      assert.ok(c.xticks.length >= 2 && c.xticks.every(Number.isInteger), `${c.id}: x ticks ${c.xticks.join(", ")}`);
    }
    // Reference lines: ln 2 on both loss charts (sigmoid DPO starts there), max_grad_norm on the grad-norm chart,
    // and nothing of their colour elsewhere.
    const withLine = ["chart-loss", "chart-eval_loss", "chart-grad_norm"];
    for (const c of r.canvases)
      if (withLine.includes(c.id)) assert.ok(c.ref > 20, `${c.id}: its reference line drawn (${c.ref} pixels of its colour)`);
      else assert.ok(c.ref < 10, `${c.id}: no reference line (${c.ref} pixels of its colour)`);
  });

  it("a long run's charts draw their moving averages in headless Chromium", { skip: noChromium }, () => {
    // The real run's rows repeated to 40 steps: long enough for every noisy series to get a moving average.
    const run = readRun(runDir);
    const long: RunData = { ...run, train: Array.from({ length: 40 }, (_, i) => ({ ...run.train[i % run.train.length]!, step: i + 1 })) };
    const html = renderRunReport(long);
    const d = embeddedData(html);
    const loss = d.charts.find((c) => c.id === "loss")!;
    assert.deepEqual(loss.series.map((s) => s.label), ["loss, per step", "loss"], "the raw series and its moving average");
    const r = renderInChromium(html, "long");
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.canvases.map((c) => c.id).sort(), drawable(d).sort());
    for (const c of r.canvases) {
      assert.ok(c.painted > 2000 && c.blue > 30, `${c.id}: drawn (${c.painted} painted, ${c.blue} of the first series' colour)`);
      assert.ok(c.xticks.every(Number.isInteger), `${c.id}: x ticks ${c.xticks.join(", ")}`);
    }
  });

  it("the probe notices a blank canvas and a console error (so the check above can fail)", { skip: noChromium }, () => {
    const r = renderInChromium(`<!doctype html><html><head></head><body><canvas id="c" width="300" height="150"></canvas><script>console.error("boom")</script></body></html>`, "blank");
    assert.deepEqual(r.errors, ["console.error: boom"]);
    assert.deepEqual(r.canvases, [{ id: "c", width: 300, height: 150, painted: 0, blue: 0, ref: 0, xticks: [] }]);
  });

  let demoHtml = "";
  it("the demo report carries the reward-vs-KL frontier of results.json and escapes sample text", async () => {
    const demoDir = join(work, "demo-folder");
    const est = (mean: number, se: number): { mean: number; se: number } => ({ mean, se });
    const points = [
      { step: 0, reward: est(2, 0.2), kl: est(0, 0) },
      { step: 2, reward: est(3.5, 0.2), kl: est(1.5, 0.3) },
      { step: 3, reward: est(4.25, 0.25), kl: est(2.5, 0.4) },
    ];
    const results: DemoResults = {
      format: "tsdpo-demo", version: 1, seed: 1, quick: true, model: "stories260K.gguf",
      size: { prompts: 12, heldoutPrompts: 4, samplesPerPrompt: 4, maxNewTokens: 12, evalSamplesPerPrompt: 2, epochs: 1, batchSize: 4, learningRate: 5e-4, evalPoints: 1 },
      data: { prompts_file: "prompts.txt", train_prompts: 8, heldout_prompts: 4, train_pairs: 10, eval_pairs: 4, tied_skipped: 2, label_reward: est(1, 0.1) },
      reference: { reward: est(2, 0.2), kl: est(0, 0) },
      runs: [{ beta: 0.1, run_dir: runDir, steps: 3, points, final: { reward: est(4.25, 0.25), kl: est(2.5, 0.4), eval_accuracy: 0.75, eval_loss: 0.6, eval_margin: 0.2 }, train_seconds: 1, eval_seconds: 1 }],
      seconds: { label: 1, reference_eval: 1, total: 3 },
    };
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(demoDir, "demo"), { recursive: true });
    writeFileSync(join(demoDir, "demo", "results.json"), JSON.stringify(results));
    writeFileSync(join(demoDir, "demo", "samples.json"), JSON.stringify({
      prompts: ["Tom had a <b>kite</b>."], reference: [{ prompt: 0, text: " It was sad.", reward: -2, logratio: 0 }], policies: { "0.1": [{ prompt: 0, text: " It was fun!", reward: 4, logratio: 1.5 }] },
    }));
    const path = await writeDemoReport(demoDir);
    const html = readFileSync(path, "utf8");
    assertOffline(html, "demo report.html");
    assert.ok(html.includes("Tom had a &lt;b&gt;kite&lt;/b&gt;."), "sample text is escaped");
    const d = embeddedData(html);
    const frontier = d.charts.find((c) => c.id === "frontier")!;
    assert.deepEqual(frontier.series.map((s) => s.points), [[[0, 2], [1.5, 3.5], [2.5, 4.25]], [[0, 2]]]);
    demoHtml = html;
  });

  it("the demo report draws every chart in headless Chromium", { skip: noChromium }, () => {
    assert.ok(demoHtml, "the demo report was built by the test before");
    const d = embeddedData(demoHtml);
    const r = renderInChromium(demoHtml, "demo");
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.canvases.map((c) => c.id).sort(), drawable(d).sort());
    for (const c of r.canvases) assert.ok(c.painted > 2000 && c.blue > 30, `${c.id}: drawn (${c.painted} painted, ${c.blue} of the first series' colour)`);
  });
});
