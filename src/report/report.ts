// The HTML run report: one self-contained file (report.html) that opens offline in any browser. It holds the
// run's metrics as JSON, Chart.js (npm `chart.js`, MIT) inlined from node_modules, and a short script that draws
// the charts; no file, font or script is fetched from anywhere.
//
//   run report    (report.html in a train() run folder; written at the end of train() and by `tsdpo report`)
//                 the summary (held-out values first) and the run's health (health.ts: start, end and best
//                 held-out values, warnings with the settings that address them); loss; rewards chosen /
//                 rejected / margins; accuracies; grad norm; learning rate; tokens/s; eval curves; policy and
//                 reference samples (samples.json); the resolved config
//   demo report   (report.html in a `tsdpo demo` folder) the summary table, the health of every β's run, the
//                 reward-vs-KL frontier with standard errors, the training charts of every β overlaid, held-out
//                 samples, the configs
//
// Every chart is drawn from data the run wrote (metrics.jsonl and friends); a chart with nothing to draw is
// replaced by a sentence saying why, so a canvas in the page always has something on it. Noisy per-step series
// get a moving average drawn over them, and loss and grad-norm charts a line at the value that reads them (ln 2,
// max_grad_norm).

import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { inputError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import type { IterateResults } from "../iterate/iterate.js";
import type { DemoResults, DemoSamples } from "../demo/demo.js";
import { type RunHealth, healthRows, ln2Baseline, LN2, movingAverage, runHealth, smoothingWindow } from "./health.js";
import { ensureRunSamples } from "./samples.js";

// ---------------------------------------------------------------------------------------------------------------
// What a report is drawn from

export type MetricsRow = Record<string, number>;

/** samples.json in a run folder: one row per prompt, a policy and a reference completion. */
export interface SamplesDoc {
  source: string;
  reward?: string | null;
  temperature?: number;
  max_new_tokens?: number;
  rows: { prompt: string; reference: string; policy: string; reference_reward?: number | null; policy_reward?: number | null }[];
}

export interface RunData {
  dir: string;
  label: string;
  config: Record<string, unknown> | null;
  /** Training rows (they have "loss") and eval rows (they have "eval_loss"), in file order. */
  train: MetricsRow[];
  eval: MetricsRow[];
  summary: Record<string, unknown> | null;
  samples: SamplesDoc | null;
  /** Why there is no sample table, when there is none. */
  samplesNote: string | null;
}

function readJson(path: string): unknown {
  const text = readFileSync(path, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw inputError(`${path}: not valid JSON (${(e as Error).message}); the run folder is damaged, re-run or remove the file`);
  }
}

const readJsonIf = <T>(path: string): T | null => (existsSync(path) ? (readJson(path) as T) : null);

/** metrics.jsonl: one JSON object per line. A last line cut short by a crash is ignored; any other bad line is an error. */
export function readMetrics(path: string): MetricsRow[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, "utf8").split("\n");
  const rows: MetricsRow[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      rows.push(JSON.parse(line) as MetricsRow);
    } catch (e) {
      const last = lines.slice(i + 1).every((l) => l.trim() === "");
      if (!last) throw inputError(`${path}:${i + 1}: not valid JSON (${(e as Error).message}); the metrics log is damaged`);
    }
  });
  return rows;
}

export function readRun(dir: string, label = basename(resolve(dir))): RunData {
  const metricsPath = join(dir, "metrics.jsonl");
  if (!existsSync(join(dir, "config.json")) && !existsSync(metricsPath))
    throw inputError(`${dir}: not a tsdpo run folder (no config.json or metrics.jsonl); give the folder train wrote (its output_dir)`);
  const rows = readMetrics(metricsPath);
  const samples = readJsonIf<SamplesDoc>(join(dir, "samples.json"));
  return {
    dir, label,
    config: readJsonIf<Record<string, unknown>>(join(dir, "config.json")),
    train: rows.filter((r) => "loss" in r),
    eval: rows.filter((r) => "eval_loss" in r),
    summary: readJsonIf<Record<string, unknown>>(join(dir, "summary.json")),
    samples,
    samplesNote: samples ? null : "This run has no samples.json.",
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Charts (as data for the page script)

interface Series {
  label: string;
  points: [number, number][];
  /** Index into the page palette. */
  color: number;
  dashed?: boolean;
  /** Standard errors of y (and of x), drawn as error bars and shown in the tooltip. */
  err?: number[];
  xerr?: number[];
  /** Drawn faint and left out of the legend: the raw per-step values under a moving average of the same colour. */
  faded?: boolean;
}

interface ChartSpec {
  id: string;
  title: string;
  x: string;
  y: string;
  kind: "line" | "scatter";
  series: Series[];
  /** What to say instead of the chart when no series has points. */
  empty: string;
  /** Horizontal reference lines (ln 2 on a loss chart, the clip threshold on the grad-norm chart); kept in view. */
  hlines?: { y: number; label: string }[];
  /** x is an optimizer step: ticks at whole numbers only. */
  integerX?: boolean;
  /** A sentence under the chart (what faint and solid lines are). */
  caption?: string;
}

function seriesOf(rows: readonly MetricsRow[], key: string, label: string, color: number, dashed = false): Series {
  const points: [number, number][] = [];
  for (const r of rows) {
    const x = r.step;
    const y = r[key];
    if (typeof x === "number" && typeof y === "number" && Number.isFinite(y)) points.push([x, y]);
  }
  return { label, points, color, dashed };
}

/** Fewest points that get a moving average: below this every point is drawn as a dot and is easy to read alone. */
export const TREND_MIN_POINTS = 20;

/**
 * A noisy per-step series as the pair the page draws: the raw values faint, and their centred moving average
 * (health.ts) solid in the same colour under the series' label. Short series stay as they are.
 */
export function withTrend(s: Series): Series[] {
  if (s.points.length < TREND_MIN_POINTS) return [s];
  const avg = movingAverage(s.points.map((p) => p[1]), smoothingWindow(s.points.length));
  return [
    { ...s, label: `${s.label}, per step`, faded: true },
    { ...s, points: s.points.map((p, i) => [p[0], avg[i]!] as [number, number]) },
  ];
}

/** The reference lines of a loss chart: ln 2, where a run's loss starts (policy = reference), when it does. */
function ln2Lines(runs: readonly RunData[]): NonNullable<ChartSpec["hlines"]> {
  return runs.some((r) => ln2Baseline(r) === true) ? [{ y: LN2, label: "ln 2: the untrained model" }] : [];
}

/** The clip thresholds of the runs (one line per distinct max_grad_norm; none when clipping is off). */
function clipLines(runs: readonly RunData[]): NonNullable<ChartSpec["hlines"]> {
  const clips = new Set(runs.map((r) => r.config?.max_grad_norm).filter((c): c is number => typeof c === "number" && c > 0));
  return [...clips].map((c) => ({ y: c, label: `clipped above: max_grad_norm ${c}` }));
}

/** The standard training charts, one series per run (and per metric where a chart holds several). */
export function trainingCharts(runs: readonly RunData[]): ChartSpec[] {
  const many = runs.length > 1;
  const name = (r: RunData, what: string): string => (many ? `${r.label} ${what}` : what);
  const per = (id: string, title: string, key: string, y: string, rows: (r: RunData) => MetricsRow[], empty: string, smooth = false): ChartSpec => ({
    id, title, x: "step", y, kind: "line", empty, integerX: true,
    series: runs.flatMap((r, i) => {
      const s = seriesOf(rows(r), key, many ? r.label : key, i);
      return smooth ? withTrend(s) : [s];
    }),
  });
  const tr = (r: RunData): MetricsRow[] => r.train;
  const ev = (r: RunData): MetricsRow[] => r.eval;
  const noTrain = "No training steps were logged yet.";
  const noEval = "This run has no evaluation rows (set eval_size or eval_data to hold out pairs).";
  const charts: ChartSpec[] = [
    { ...per("loss", "Training loss", "loss", "loss", tr, noTrain, true), hlines: ln2Lines(runs) },
    {
      id: "rewards", title: "Implicit rewards β·log(π/π_ref): chosen, rejected, margin", x: "step", y: "reward", kind: "line", empty: noTrain, integerX: true,
      series: runs.flatMap((r, i) => [
        ...withTrend(seriesOf(r.train, "rewards/chosen", name(r, "chosen"), many ? i : 0)),
        ...withTrend(seriesOf(r.train, "rewards/rejected", name(r, "rejected"), many ? i : 1, true)),
        ...withTrend(seriesOf(r.train, "rewards/margins", name(r, "margin"), many ? i : 2, many)),
      ]),
    },
    per("accuracies", "Reward accuracy (chosen ranked above rejected)", "rewards/accuracies", "accuracy", tr, noTrain, true),
    { ...per("grad_norm", "Gradient norm (before clipping)", "grad_norm", "‖g‖", tr, noTrain, true), hlines: clipLines(runs) },
    per("learning_rate", "Learning rate", "learning_rate", "lr", tr, noTrain),
    per("tokens_per_second", "Throughput", "tokens_per_second", "tokens / s", tr, noTrain),
    { ...per("eval_loss", "Eval loss (held-out pairs)", "eval_loss", "loss", ev, noEval), hlines: ln2Lines(runs) },
    per("eval_accuracies", "Eval reward accuracy (held-out pairs)", "eval_rewards/accuracies", "accuracy", ev, noEval),
    per("eval_margins", "Eval reward margin (held-out pairs)", "eval_rewards/margins", "margin", ev, noEval),
  ];
  for (const c of charts) {
    const windows = [...new Set(c.series.filter((s) => s.faded).map((s) => smoothingWindow(s.points.length)))];
    if (windows.length > 0) c.caption = `Faint: each logged step. Solid: centred moving average over ${windows.join(" / ")} steps.`;
  }
  return charts;
}

// ---------------------------------------------------------------------------------------------------------------
// HTML

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** JSON that is safe inside a <script> element (no "</script>", no HTML comment openers). */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

let chartJsSource: string | null = null;

/**
 * Chart.js's UMD bundle from node_modules, made inert for an offline page: the source-map comment is dropped (a
 * browser's devtools would try to load the map) and the web addresses in its licence comments lose their scheme,
 * so the report contains no URL at all. The licence notice itself stays.
 */
export function chartJs(): { source: string; version: string } {
  const require = createRequire(import.meta.url);
  const main = require.resolve("chart.js"); // .../chart.js/dist/chart.cjs (the UMD file is not in "exports")
  const pkg = JSON.parse(readFileSync(join(dirname(main), "..", "package.json"), "utf8")) as { version: string };
  if (chartJsSource === null) {
    const raw = readFileSync(join(dirname(main), "chart.umd.min.js"), "utf8");
    chartJsSource = raw
      .replace(/\/\/# sourceMappingURL=\S*\s*$/, "")
      .replace(/\/\*![\s\S]*?\*\//g, (c) => c.replace(/https?:\/\//g, ""))
      .replace(/<\/script/gi, "<\\/script");
  }
  return { source: chartJsSource, version: pkg.version };
}

/** Colour of reference lines (ln 2, the clip threshold): a dark gold that no series in the palette has. */
export const REF_LINE_COLOR = "#b8860b";

const STYLE = `
:root { --fg: #1d2330; --muted: #5b6475; --line: #dde2ea; --bg: #ffffff; --panel: #f6f8fb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 20px 60px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 32px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card.wide { grid-column: 1 / -1; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.card h3 { font-size: 13px; margin: 0 0 6px; font-weight: 600; }
.chart { position: relative; height: 240px; } .wide .chart { height: 360px; }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { white-space: pre-wrap; max-width: 420px; }
.prompt { color: var(--muted); }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--panel); border: 1px solid var(--line); padding: 10px; overflow: auto; border-radius: 6px; }
details { margin: 8px 0; } summary { cursor: pointer; }
.kv td:first-child { color: var(--muted); white-space: nowrap; width: 1%; }
.caption { color: var(--muted); font-size: 12px; margin: 4px 0 0; }
.verdict { font-weight: 600; margin: 6px 0 10px; } .verdict.ok { color: #1e7b34; } .verdict.warn { color: #a4530b; }
ul.warnings { padding-left: 20px; margin: 10px 0; } ul.warnings li { margin: 0 0 10px; }
ul.warnings .evidence, ul.warnings .advice { display: block; }
ul.checks-not-run { color: var(--muted); font-size: 12px; padding-left: 20px; }
`;

/**
 * The page script: draws every chart spec found in the embedded data. Animations are off, so each chart is fully
 * drawn when its constructor returns (the page is static; nothing waits on a timer). Chart.js has no error bars or
 * reference lines of its own; a small per-chart plugin draws both over the datasets, and the axes are widened to
 * keep them in view.
 */
const PAGE_SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  var refColor = "${REF_LINE_COLOR}";
  Chart.defaults.animation = false;
  Chart.defaults.font.size = 11;
  function stroke(ctx, x0, y0, x1, y1) { ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke(); }
  function overlay(spec) {
    return { id: "tsdpoOverlay", afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx, area = chart.chartArea, xs = chart.scales.x, ys = chart.scales.y;
      ctx.save();
      ctx.lineWidth = 1.2;
      chart.data.datasets.forEach(function (ds, i) {
        if (!chart.isDatasetVisible(i)) return;
        ctx.strokeStyle = ds.borderColor;
        ds.data.forEach(function (p) {
          var px = xs.getPixelForValue(p.x), py = ys.getPixelForValue(p.y);
          if (p.err) {
            var lo = ys.getPixelForValue(p.y - p.err), hi = ys.getPixelForValue(p.y + p.err);
            stroke(ctx, px, lo, px, hi); stroke(ctx, px - 4, lo, px + 4, lo); stroke(ctx, px - 4, hi, px + 4, hi);
          }
          if (p.xerr) {
            var l = xs.getPixelForValue(p.x - p.xerr), r = xs.getPixelForValue(p.x + p.xerr);
            stroke(ctx, l, py, r, py); stroke(ctx, l, py - 4, l, py + 4); stroke(ctx, r, py - 4, r, py + 4);
          }
        });
      });
      (spec.hlines || []).forEach(function (h) {
        var y = ys.getPixelForValue(h.y);
        if (y < area.top - 0.5 || y > area.bottom + 0.5) return;
        ctx.strokeStyle = refColor; ctx.fillStyle = refColor; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
        stroke(ctx, area.left, y, area.right, y);
        ctx.setLineDash([]); ctx.textAlign = "right"; ctx.textBaseline = "bottom"; ctx.font = "11px system-ui, sans-serif";
        ctx.fillText(h.label, area.right - 4, y - 2);
      });
      ctx.restore();
    } };
  }
  /** Axis bounds that keep error bars and reference lines in view (undefined: Chart.js's own). */
  function extent(values) {
    return values.length === 0 ? [undefined, undefined] : [Math.min.apply(null, values), Math.max.apply(null, values)];
  }
  data.charts.forEach(function (spec) {
    var canvas = document.getElementById("chart-" + spec.id);
    if (!canvas) return;
    var shown = spec.series.filter(function (s) { return s.points.length > 0; });
    var ys = (spec.hlines || []).map(function (h) { return h.y; }), xs = [];
    shown.forEach(function (s) {
      s.points.forEach(function (p, i) {
        if (s.err && s.err[i]) ys.push(p[1] - s.err[i], p[1] + s.err[i]);
        if (s.xerr && s.xerr[i]) xs.push(p[0] - s.xerr[i], p[0] + s.xerr[i]);
      });
    });
    var yb = extent(ys), xb = extent(xs);
    var datasets = shown.map(function (s) {
      var c = palette[s.color % palette.length];
      return {
        label: s.label, faded: !!s.faded,
        data: s.points.map(function (p, i) { return { x: p[0], y: p[1], err: s.err ? s.err[i] : null, xerr: s.xerr ? s.xerr[i] : null }; }),
        borderColor: s.faded ? c + "55" : c, backgroundColor: s.faded ? c + "55" : c, borderDash: s.dashed ? [5, 4] : [],
        borderWidth: s.faded ? 1 : 1.6, pointRadius: s.faded ? 0 : spec.kind === "scatter" || s.points.length < 40 ? 3 : 0, tension: 0,
        showLine: true,
      };
    });
    var legend = datasets.filter(function (d) { return !d.faded; }).length;
    new Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      plugins: [overlay(spec)],
      options: {
        responsive: true, maintainAspectRatio: false, parsing: true,
        interaction: { mode: spec.kind === "scatter" ? "nearest" : "index", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: spec.x }, suggestedMin: xb[0], suggestedMax: xb[1], ticks: spec.integerX ? { precision: 0 } : {} },
          y: { type: "linear", title: { display: true, text: spec.y }, suggestedMin: yb[0], suggestedMax: yb[1] },
        },
        plugins: {
          legend: { display: legend > 1, labels: { boxWidth: 12, filter: function (item, d) { return !d.datasets[item.datasetIndex].faded; } } },
          tooltip: { callbacks: { label: function (ctx) {
            var p = ctx.raw; var y = Number(p.y).toPrecision(4);
            return ctx.dataset.label + ": " + (spec.kind === "scatter" ? "KL " + Number(p.x).toFixed(3) + (p.xerr ? " ± " + Number(p.xerr).toPrecision(2) : "") + ", " : "") + y + (p.err != null ? " ± " + Number(p.err).toPrecision(2) : "");
          } } },
        },
      },
    });
  });
})();
`;

function chartCards(charts: readonly ChartSpec[], wide = false): string {
  return charts
    .map((c) => {
      const has = c.series.some((s) => s.points.length > 0);
      const body = has ? `<div class="chart"><canvas id="chart-${esc(c.id)}" role="img" aria-label="${esc(c.title)}"></canvas></div>` : `<p class="note">${esc(c.empty)}</p>`;
      const caption = has && c.caption ? `<p class="caption">${esc(c.caption)}</p>` : "";
      return `<div class="card${wide ? " wide" : ""}"><h3>${esc(c.title)}</h3>${body}${caption}</div>`;
    })
    .join("\n");
}

const num = (x: unknown, d = 4): string => (typeof x === "number" && Number.isFinite(x) ? (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : x.toFixed(d)) : "—");

function configTable(cfg: Record<string, unknown> | null): string {
  if (!cfg) return `<p class="note">This run has no config.json.</p>`;
  const flat: [string, unknown][] = [];
  for (const [k, v] of Object.entries(cfg)) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) flat.push([`${k}.${k2}`, v2]);
    else flat.push([k, v]);
  }
  const rows = flat.map(([k, v]) => `<tr><td><code>${esc(k)}</code></td><td><code>${esc(JSON.stringify(v))}</code></td></tr>`).join("");
  return `<table class="kv">${rows}</table>`;
}

function samplesTable(run: RunData): string {
  const s = run.samples;
  if (!s || s.rows.length === 0) return `<p class="note">${esc(run.samplesNote ?? "No samples.")}</p>`;
  const rewards = s.rows.some((r) => typeof r.policy_reward === "number");
  const head = `<tr><th>prompt</th><th>reference (π_ref)</th>${rewards ? `<th class="num">reward</th>` : ""}<th>policy (π)</th>${rewards ? `<th class="num">reward</th>` : ""}</tr>`;
  const rows = s.rows
    .map(
      (r) =>
        `<tr><td class="text prompt">${esc(r.prompt.length > 400 ? "…" + r.prompt.slice(-400) : r.prompt)}</td><td class="text">${esc(r.reference)}</td>` +
        (rewards ? `<td class="num">${num(r.reference_reward, 0)}</td>` : "") +
        `<td class="text">${esc(r.policy)}</td>` +
        (rewards ? `<td class="num">${num(r.policy_reward, 0)}</td>` : "") +
        `</tr>`,
    )
    .join("\n");
  const how = [s.source, s.temperature !== undefined ? `temperature ${s.temperature}` : "", s.max_new_tokens ? `up to ${s.max_new_tokens} new tokens` : "", s.reward ? `reward: ${s.reward}` : ""]
    .filter(Boolean)
    .join("; ");
  return `<p class="sub">${esc(how)}</p><table>${head}${rows}</table>`;
}

function page(title: string, subtitle: string, body: string, charts: readonly ChartSpec[]): string {
  const lib = chartJs();
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tsdpo">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${esc(title)}</h1>
<p class="sub">${esc(subtitle)}</p>
${body}
<p class="note">Charts drawn with Chart.js ${esc(lib.version)} (MIT licence), inlined into this file.</p>
</main>
<script type="application/json" id="report-data">${scriptJson({ charts })}</script>
<script>${lib.source}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

/**
 * The run at a glance. Held-out values lead: a training row is the mean over one batch, so the last one (often
 * accuracy 1.000) says little, and the training values shown are means over the last quarter of the run.
 */
function summaryKv(run: RunData): string {
  const last = run.train.at(-1);
  const cfg = run.config ?? {};
  const loss = (cfg.loss ?? {}) as Record<string, unknown>;
  const rows = new Map(healthRows(run).map((r) => [r.key, r]));
  const held = (key: string, what: string, d: number): [string, string][] => {
    const r = rows.get(key);
    if (!r?.end) return [];
    const best = r.best && r.best.step !== r.end.step ? ` (best ${num(r.best.value, d)} at step ${r.best.step})` : "";
    return [[`held-out ${what} (step ${r.end.step})`, num(r.end.value, d) + best]];
  };
  const trained = (key: string, what: string, d: number): [string, string][] => {
    const r = rows.get(key);
    return r?.end ? [[`training ${what}, mean of the last ${r.endRows} logged steps`, num(r.end.value, d)]] : [];
  };
  const items: [string, string][] = [
    ["model", String(cfg.model ?? "stories260K (shipped)")],
    ["data", String(cfg.data ?? "HH-RLHF harmless-base test (shipped)")],
    ["loss", cfg.trainer === "sft" ? "SFT: the NLL of the trained tokens (tsdpo sft)" : `${JSON.stringify(loss.loss_type ?? "sigmoid")}, β = ${loss.beta ?? "?"}`],
    ["steps logged", last ? `${last.step}` : "0"],
    ...(run.eval.length > 0
      ? [...held("eval_rewards/accuracies", "reward accuracy", 3), ...held("eval_loss", "loss", 4), ...held("eval_rewards/margins", "reward margin", 3)]
      : [["held-out evaluation", "none: set eval_size or eval_data to hold out pairs; training batches cannot show how the model does on new pairs"] as [string, string]]),
    ...trained("rewards/accuracies", "reward accuracy", 3),
    ...trained("loss", "loss", 4),
    ["tokens seen", last ? String(last.num_tokens ?? "—") : "—"],
    ...memoryRows(run.summary),
  ];
  return `<table class="kv">${items.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("")}</table>`;
}

/** The fit planner's prediction (plan.ts) beside what the run measured, from summary.json. */
function memoryRows(summary: Record<string, unknown> | null): [string, string][] {
  const m = summary?.memory as { predicted_peak_mb?: number; measured_peak_mb?: number; predicted_step_seconds?: number | null; measured_step_seconds?: number | null } | undefined;
  if (!m || typeof m.predicted_peak_mb !== "number" || typeof m.measured_peak_mb !== "number") return [];
  const rows: [string, string][] = [["peak memory", `${m.measured_peak_mb} MB measured (peak RSS); the planner predicted ${m.predicted_peak_mb} MB`]];
  if (typeof m.predicted_step_seconds === "number" && typeof m.measured_step_seconds === "number")
    rows.push(["time per micro-batch", `${num(m.measured_step_seconds, 3)} s measured (median); the planner predicted ${num(m.predicted_step_seconds, 3)} s`]);
  return rows;
}

/** Escaped text with each named setting set in <code>. */
function withSettings(text: string, settings: readonly string[]): string {
  let html = esc(text);
  for (const k of settings) html = html.replace(new RegExp(`\\b${k.replace(/[^\w]/g, "\\$&")}\\b`, "g"), `<code>${k}</code>`);
  return html;
}

/** The health section's body: the verdict, start/end/best values, the warnings, and the checks that did not run. */
export function healthHtml(h: RunHealth): string {
  const n = h.warnings.length;
  const verdict = n === 0 ? `<p class="verdict ok">No warnings.</p>` : `<p class="verdict warn">${n} warning${n === 1 ? "" : "s"}.</p>`;
  const digits = (key: string): number => (key.endsWith("loss") ? 4 : 3);
  const at = (p: { step: number; value: number } | null, key: string): string => (p ? `${num(p.value, digits(key))} <span class="prompt">(step ${p.step})</span>` : "—");
  const table = h.rows.length === 0 ? `<p class="note">No metrics were logged yet.</p>` :
    `<table><tr><th>metric</th><th>on</th><th class="num">start</th><th class="num">end</th><th class="num">best</th></tr>` +
    h.rows
      .map((r) => {
        const end = r.split === "training" ? `${num(r.end!.value, digits(r.key))} <span class="prompt">(mean of last ${r.endRows} steps)</span>` : at(r.end, r.key);
        return `<tr><td><code>${esc(r.key)}</code></td><td>${r.split === "held-out" ? "held-out pairs" : "training batches"}</td>` +
          `<td class="num">${at(r.start, r.key)}</td><td class="num">${end}</td><td class="num">${r.split === "held-out" ? at(r.best, r.key) : "—"}</td></tr>`;
      })
      .join("") +
    `</table>`;
  const warnings = n === 0 ? "" :
    `<ul class="warnings">` +
    h.warnings
      .map((w) => `<li data-warning="${esc(w.id)}"><strong>${esc(w.title)}</strong><span class="evidence">${esc(w.evidence)}</span>` +
        `<span class="advice"><em>What to change:</em> ${withSettings(w.advice, w.settings)}</span></li>`)
      .join("") +
    `</ul>`;
  const notes = h.notes.length === 0 ? "" : `<ul class="checks-not-run">${h.notes.map((s) => `<li>${esc(s)}</li>`).join("")}</ul>`;
  return verdict + warnings + table + notes;
}

/** The report of one train() run folder, as HTML. */
export function renderRunReport(run: RunData): string {
  const charts = trainingCharts([run]);
  const body = [
    `<h2>Summary</h2>${summaryKv(run)}`,
    `<h2 id="health">Health</h2>${healthHtml(runHealth(run))}`,
    `<h2>Training</h2><div class="grid">${chartCards(charts.slice(0, 6))}</div>`,
    `<h2>Evaluation</h2><div class="grid">${chartCards(charts.slice(6))}</div>`,
    `<h2>Samples</h2>${samplesTable(run)}`,
    `<h2>Resolved config</h2>${configTable(run.config)}`,
  ].join("\n");
  return page(`tsdpo run report: ${run.label}`, resolve(run.dir), body, charts);
}

// ---------------------------------------------------------------------------------------------------------------
// Demo report

const pm = (e: { mean: number; se: number }, d = 2): string => `${num(e.mean, d)} ± ${num(e.se, d)}`;

export function frontierChart(res: DemoResults): ChartSpec {
  const series: Series[] = res.runs.map((r, i) => ({
    label: `β = ${r.beta}`,
    points: r.points.map((p) => [p.kl.mean, p.reward.mean] as [number, number]),
    err: r.points.map((p) => p.reward.se),
    xerr: r.points.map((p) => p.kl.se),
    color: i,
  }));
  series.push({ label: "reference", points: [[0, res.reference.reward.mean]], err: [res.reference.reward.se], xerr: [0], color: 8 });
  return {
    id: "frontier", title: "Reward vs KL(π‖π_ref) on held-out prompts: each β's checkpoints, from the reference outwards",
    x: "KL(π‖π_ref), nats per completion", y: "mean AFINN-165 reward", kind: "scatter", series, empty: "No run was evaluated.",
  };
}

export function renderDemoReport(dir: string, res: DemoResults, samples: DemoSamples | null, runs: readonly RunData[]): string {
  const frontier = frontierChart(res);
  const charts = [frontier, ...trainingCharts(runs)];
  const tableRows = [
    `<tr><td>reference π_ref</td><td class="num">${pm(res.reference.reward)}</td><td class="num">—</td><td class="num">0</td><td class="num">—</td><td class="num">—</td><td class="num">0</td></tr>`,
    ...res.runs.map((r) => {
      const d = r.final.reward.mean - res.reference.reward.mean;
      return `<tr><td>DPO β = ${r.beta}</td><td class="num">${pm(r.final.reward)}</td><td class="num">${d >= 0 ? "+" : ""}${num(d, 2)}</td>` +
        `<td class="num">${pm(r.final.kl)}</td><td class="num">${num(r.final.eval_accuracy, 3)}</td><td class="num">${num(r.final.eval_margin, 3)}</td><td class="num">${r.steps}</td></tr>`;
    }),
  ].join("\n");
  const summary =
    `<table><tr><th>policy</th><th class="num">AFINN reward (held-out)</th><th class="num">Δ vs reference</th><th class="num">KL(π‖π_ref)</th>` +
    `<th class="num">held-out pref. accuracy</th><th class="num">held-out margin</th><th class="num">steps</th></tr>${tableRows}</table>` +
    `<p class="note">Reward and KL: mean ± standard error over ${res.data.heldout_prompts} held-out story openings × ${res.size.evalSamplesPerPrompt} fresh samples each ` +
    `(temperature 1, ${res.size.maxNewTokens} tokens; the same random stream for every policy). KL is the mean of log π(y|x) − log π_ref(y|x) over y ~ π. ` +
    `Preference accuracy: share of held-out pairs whose implicit reward β·log(π/π_ref) ranks the AFINN-preferred completion first (undefined for the reference, where every implicit reward is 0).</p>`;
  const d = res.data;
  const dataKv =
    `<table class="kv">` +
    [
      ["model", res.model],
      ["prompts", `${d.train_prompts} training, ${d.heldout_prompts} held out (TinyStories openings, CDLA-Sharing-1.0)`],
      ["labelled pairs", `${d.train_pairs} training (demo/preferences.jsonl), ${d.eval_pairs} held-out (demo/preferences_eval.jsonl); ${d.tied_skipped} tied pairs skipped`],
      ["reference samples used for labels", `mean AFINN ${pm(d.label_reward)}`],
      ["seed", `${res.seed}${res.quick ? " (--quick: a tiny run for tests)" : ""}`],
      ["time", `${num(res.seconds.total, 0)} s in all: labelling ${num(res.seconds.label, 0)} s, ` + res.runs.map((r) => `β=${r.beta} training ${num(r.train_seconds, 0)} s + evaluation ${num(r.eval_seconds, 0)} s`).join(", ")],
    ]
      .map(([k, v]) => `<tr><td>${esc(k!)}</td><td>${esc(v!)}</td></tr>`)
      .join("") +
    `</table>`;
  let sampleHtml = `<p class="note">No demo/samples.json.</p>`;
  if (samples) {
    const betas = Object.keys(samples.policies);
    const head = `<tr><th>held-out prompt</th><th>reference</th><th class="num">r</th>${betas.map((b) => `<th>β = ${esc(b)}</th><th class="num">r</th>`).join("")}</tr>`;
    const first = <T extends { prompt: number }>(xs: readonly T[], i: number): T | undefined => xs.find((s) => s.prompt === i);
    const rows = samples.prompts
      .slice(0, 12)
      .map((p, i) => {
        const ref = first(samples.reference, i);
        return `<tr><td class="text prompt">${esc(p)}</td><td class="text">${esc(ref?.text ?? "")}</td><td class="num">${num(ref?.reward, 0)}</td>` +
          betas.map((b) => {
            const s = first(samples.policies[b]!, i);
            return `<td class="text">${esc(s?.text ?? "")}</td><td class="num">${num(s?.reward, 0)}</td>`;
          }).join("") + `</tr>`;
      })
      .join("\n");
    sampleHtml = `<p class="sub">The first fresh sample per held-out prompt (of ${res.size.evalSamplesPerPrompt}); r = AFINN-165 score.</p><table>${head}${rows}</table>`;
  }
  const configs = runs.map((r) => `<details><summary>${esc(r.label)} (${esc(r.dir)})</summary>${configTable(r.config)}</details>`).join("\n");
  const body = [
    `<h2>Result</h2>${summary}`,
    `<h2 id="health">Health of each run</h2>` +
      (runs.length === 0 ? `<p class="note">No β run folder was found.</p>` : runs.map((r) => `<h3>${esc(r.label)}</h3>${healthHtml(runHealth(r))}`).join("\n")),
    `<h2>Reward vs KL frontier</h2><div class="grid">${chartCards([frontier], true)}</div>` +
      `<p class="note">The DPO paper's Figure 2 in miniature: each point is a policy (a checkpoint of one β's run) measured on the held-out prompts; up and to the left is better. ` +
      `Error bars: ± one standard error of the mean reward (vertical) and of the mean KL (horizontal) over the held-out samples.</p>`,
    `<h2>Data</h2>${dataKv}`,
    `<h2>Training${runs.length > 1 ? " (all β overlaid)" : ""}</h2><div class="grid">${chartCards(charts.slice(1, 7))}</div>`,
    `<h2>Evaluation on held-out pairs</h2><div class="grid">${chartCards(charts.slice(7))}</div>`,
    `<h2>Samples</h2>${sampleHtml}`,
    `<h2>Resolved configs</h2>${configs}`,
  ].join("\n");
  return page("tsdpo demo: steering stories260K towards positive stories with DPO", resolve(dir), body, charts);
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/**
 * Writes report.html into a train() run folder; returns its path. A finished run without samples.json gets one
 * first when sampling is cheap (see samples.ts).
 */
export async function writeRunReport(runDir: string, opts: { sample?: boolean } = {}): Promise<string> {
  const run = readRun(runDir);
  if (!run.samples && opts.sample !== false) {
    // Samples are a courtesy of the report: a failure to make them becomes the table's note, not a failed run.
    const s = await ensureRunSamples(runDir, run.config).catch((e: unknown) => ({ note: `No samples: ${e instanceof Error ? e.message : String(e)}` }));
    if ("rows" in s) run.samples = s;
    else run.samplesNote = s.note;
  }
  const path = join(runDir, "report.html");
  writeFileAtomic(path, renderRunReport(run));
  return path;
}

export function isDemoFolder(dir: string): boolean {
  return existsSync(join(dir, "demo", "results.json"));
}

/** Writes report.html into a `tsdpo demo` folder (and refreshes each β run's own report); returns its path. */
export async function writeDemoReport(dir: string): Promise<string> {
  const res = readJson(join(dir, "demo", "results.json")) as DemoResults;
  const samples = readJsonIf<DemoSamples>(join(dir, "demo", "samples.json"));
  const runs: RunData[] = [];
  for (const r of res.runs) {
    const runDir = existsSync(r.run_dir) ? r.run_dir : join(dir, basename(r.run_dir)); // the folder may have moved
    await writeRunReport(runDir);
    runs.push(readRun(runDir, `β=${r.beta}`));
  }
  const path = join(dir, "report.html");
  writeFileAtomic(path, renderDemoReport(dir, res, samples, runs));
  return path;
}

/** `tsdpo report <folder>`: a demo folder or a run folder. */
export async function writeReport(dir: string): Promise<string> {
  if (!existsSync(dir)) throw inputError(`${dir}: no such folder; give a run folder (train's output_dir) or a tsdpo demo folder`);
  return isDemoFolder(dir) ? writeDemoReport(dir) : writeRunReport(dir);
}

/** `tsdpo iterate`'s report: held-out judge score, win-rate against the original model and KL, per round. */
export function renderIterateReport(res: IterateResults): string {
  const pts = (f: (e: IterateResults["eval"][number]) => { mean: number; se: number }): Series => ({
    label: "held-out", color: 0, points: res.eval.map((e) => [e.round, f(e).mean]), err: res.eval.map((e) => f(e).se),
  });
  const chart = (id: string, title: string, y: string, f: (e: IterateResults["eval"][number]) => { mean: number; se: number }, hlines?: ChartSpec["hlines"]): ChartSpec => ({
    id, title, x: "round (0 = the original model)", y, kind: "line", integerX: true, series: [pts(f)], empty: "no rounds measured yet",
    ...(hlines ? { hlines } : {}),
  });
  const charts = [
    chart("iterate-score", `Judge score (${res.judge})`, "mean score", (e) => e.score),
    chart("iterate-win", "Win-rate against the original model", "P(policy ≻ original)", (e) => e.win_rate, [{ y: 0.5, label: "even" }]),
    chart("iterate-kl", "KL(π‖π_ref) to the original model", "nats", (e) => e.kl),
  ];
  const evalRows = res.eval
    .map((e) => `<tr><td class="num">${e.round}</td><td class="num">${pm(e.score)}</td><td class="num">${pm(e.win_rate)}</td><td class="num">${pm(e.kl)}</td></tr>`)
    .join("");
  const roundRows = res.rounds
    .map((r) => `<tr><td class="num">${r.round}</td><td class="num">${r.samples}</td><td class="num">${r.pairs}</td><td class="num">${r.ties}</td>` +
      `<td class="num">${pm(r.sample_score)}</td><td class="num">${r.train.steps}</td><td class="num">${num(r.train.loss, 4)}</td><td class="num">${num(r.train.accuracy, 3)}</td></tr>`)
    .join("");
  const body =
    chartCards(charts) +
    `<h2>Held-out measurements</h2><table><tr><th class="num">round</th><th class="num">judge score</th><th class="num">win-rate vs original</th><th class="num">KL (nats)</th></tr>${evalRows}</table>` +
    `<p class="note">${res.prompts.heldout} held-out prompts; samples at temperature 1 with no top-k or top-p, the same random stream every round; ` +
    `mean ± standard error. Win-rate: the policy's sample j against the original model's sample j of the same prompt, ties half.` +
    (res.judge_agreement !== null ? ` The judge's two orders agreed on ${(100 * res.judge_agreement).toFixed(1)}% of its comparisons.` : "") + `</p>` +
    `<h2>Rounds</h2><table><tr><th class="num">round</th><th class="num">samples</th><th class="num">pairs</th><th class="num">ties</th><th class="num">sample score</th>` +
    `<th class="num">steps</th><th class="num">last loss</th><th class="num">last accuracy</th></tr>${roundRows}</table>`;
  return page("tsdpo iterate", `online DPO, ${res.rounds.length} rounds, judge ${res.judge}, ${res.prompts.train} prompts`, body, charts);
}
