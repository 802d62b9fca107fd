#!/usr/bin/env node
// tsdpo's DPO step against the same step in PyTorch, on this machine, in one run.
//
//   npm run bench:torch -- [--preset smollm-135m|qwen2.5-0.5b|stories260k|gemma2-2b|gemma3-1b|phi3-mini|gpt2-small] [--prompt-len 128] [--completion-len 128]
//                          [--pairs 1] [--steps 5] [--warmup 1] [--threads N] [--rounds 2] [--json] [--out FILE]
//                          [--baseline-tsdpo DIR [--baseline-label TEXT]]
//
// --baseline-tsdpo DIR adds a third side: another build of tsdpo (a checkout with its own dist/ and build/, such as
// the same commit with OpenBLAS's sgemm in place of tsdpo's GEMM, prepared by bench/openblas-baseline.sh), run in
// every round right after this one, so the two builds are compared in the same run and under the same load.
//
// Each round runs tools/bench_torch.py, then `node dist/src/cli/main.js bench … --json`, one child process at a
// time with the same --threads, so the two never share the CPU. PyTorch (Debian's python3-torch) gets its best
// configuration here: the OpenMP build of Debian's OpenBLAS through LD_LIBRARY_PATH (the default pthreads build
// runs its own thread pool beside PyTorch's OpenMP one), OMP_NUM_THREADS = threads, OPENBLAS_CORETYPE unset.
// --warmup goes to the PyTorch side only (tsdpo bench decides its own warm-up).
//
// Reported per side: the median over rounds of each round's ms_per_step (itself the median over that round's timed
// steps), the share split averaged over rounds, the largest peak RSS of any round, and the median GEMM GFLOP/s.
// Then the targets, a cross-check that both sides computed the same first-step log-probs (same weights,
// same tokens), and the environment. Exit status: 1 when a side fails or the cross-check disagrees (the timings
// would then compare different work), 2 on bad arguments, 0 otherwise, targets met or not.
//
// Run it on an otherwise idle machine; it records the load average before and after.

import { spawnSync } from "node:child_process";
import { existsSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PYTHON = "/usr/bin/python3"; // Debian's, which has python3-torch; a pyenv python3 on PATH may not
const TORCH_SCRIPT = join(ROOT, "tools", "bench_torch.py");
const TSDPO_MAIN = join(ROOT, "dist", "src", "cli", "main.js");
const TSDPO_PRESETS = join(ROOT, "dist", "src", "model", "presets.js");
const OPENBLAS_OPENMP_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp";

// The goals: tsdpo at least this many times faster than PyTorch per step (no goal for other presets).
const SPEED_TARGETS = { "smollm-135m": 1.5, "qwen2.5-0.5b": 1.2 };
const GEMM_SHARE_OF_PEAK = 0.8;
const LOGPS_REL_TOL = 1e-3;
const PARTS = ["policy_fwd", "ref_fwd", "backward", "optimizer"];

function usageError(message) {
  process.stderr.write(`bench-torch: ${message}\nusage: npm run bench:torch -- [--preset NAME] [--prompt-len N] ` +
    `[--completion-len N] [--pairs N] [--steps N] [--warmup N] [--threads N] [--rounds N] [--json] [--out FILE]\n`);
  process.exit(2);
}

function parseOptions(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        preset: { type: "string", default: "smollm-135m" },
        "prompt-len": { type: "string", default: "128" },
        "completion-len": { type: "string", default: "128" },
        pairs: { type: "string", default: "1" },
        steps: { type: "string", default: "5" },
        warmup: { type: "string", default: "1" },
        threads: { type: "string", default: String(availableParallelism()) },
        "baseline-tsdpo": { type: "string" },
        "baseline-label": { type: "string", default: "baseline build" },
        rounds: { type: "string", default: "2" },
        json: { type: "boolean", default: false },
        out: { type: "string" },
      },
    }));
  } catch (e) {
    usageError(e.message);
  }
  const int = (name, min) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min) usageError(`--${name} ${values[name]}: want an integer ≥ ${min}`);
    return n;
  };
  return {
    preset: values.preset,
    promptLen: int("prompt-len", 1),
    completionLen: int("completion-len", 1),
    pairs: int("pairs", 1),
    steps: int("steps", 1),
    warmup: int("warmup", 0),
    threads: int("threads", 1),
    rounds: int("rounds", 1),
    baseline: values["baseline-tsdpo"] ? resolve(values["baseline-tsdpo"]) : null,
    baselineLabel: values["baseline-label"],
    json: values.json,
    out: values.out ?? null,
  };
}

/** Progress goes to stderr so that --json leaves stdout to the one JSON object. */
const say = (line) => process.stderr.write(line + "\n");

function fail(message) {
  process.stderr.write(`bench-torch: ${message}\n`);
  process.exit(1);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Run a child to completion; returns its parsed stdout JSON, or exits printing what went wrong. */
function runJson(side, command, args, env) {
  const shown = `${command} ${args.join(" ")}`;
  const r = spawnSync(command, args, { cwd: ROOT, env, encoding: "utf8", maxBuffer: 64 << 20 });
  const stderr = (r.stderr ?? "").trim();
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.signal ? `killed by ${r.signal}` : `exit status ${r.status}`;
    fail(`the ${side} side failed (${why}): ${shown}\n--- its stderr ---\n${stderr || "(empty)"}\n------------------`);
  }
  const text = r.stdout.trim();
  for (const candidate of [text, text.split("\n").at(-1) ?? ""]) {
    try {
      return JSON.parse(candidate);
    } catch {
      // the whole of stdout was not JSON; try its last line (a program may print a notice before the object)
    }
  }
  fail(`the ${side} side printed no JSON object: ${shown}\n--- its stdout ---\n${text || "(empty)"}\n` +
    `--- its stderr ---\n${stderr || "(empty)"}\n------------------`);
}

function ensureBuilt() {
  if (existsSync(TSDPO_MAIN)) return;
  // `npm run build` is `tsc -p .` with the project's own compiler; a bare `npx tsc` outside the project would fetch
  // an unrelated npm package called tsc.
  say(`bench-torch: ${TSDPO_MAIN} is missing; building with npm run build (tsc -p .)`);
  const r = spawnSync("npm", ["run", "build"], { cwd: ROOT, stdio: ["ignore", 2, 2] });
  if (r.status !== 0 || !existsSync(TSDPO_MAIN)) fail(`the build failed (npm run build in ${ROOT})`);
}

/** PyTorch's environment: OpenMP OpenBLAS when installed, OMP_NUM_THREADS = threads, OPENBLAS_CORETYPE removed. */
function torchEnvironment(threads) {
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) };
  delete env.OPENBLAS_CORETYPE;
  const notes = [];
  if (existsSync(join(OPENBLAS_OPENMP_DIR, "libblas.so.3"))) {
    env.LD_LIBRARY_PATH = env.LD_LIBRARY_PATH ? `${OPENBLAS_OPENMP_DIR}:${env.LD_LIBRARY_PATH}` : OPENBLAS_OPENMP_DIR;
  } else {
    notes.push(`${OPENBLAS_OPENMP_DIR}/libblas.so.3 does not exist (apt-get install libopenblas0-openmp); PyTorch ` +
      `runs on the system's libblas.so.3 instead`);
  }
  return { env, notes };
}

/** Deep equality of two JSON values, object keys in any order. */
function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}

/** Differences between tools/bench_torch.py's PRESETS and tsdpo's compiled src/model/presets.ts. */
async function presetDifferences(preset) {
  const { PRESETS } = await import(pathToFileURL(TSDPO_PRESETS).href);
  const ts = PRESETS[preset];
  if (!ts) return [`tsdpo has no preset ${preset}; known: ${Object.keys(PRESETS).join(", ")}`];
  const r = spawnSync(PYTHON, [TORCH_SCRIPT, "--print-presets"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) fail(`${PYTHON} ${TORCH_SCRIPT} --print-presets failed:\n${r.stderr || r.error?.message}`);
  const py = JSON.parse(r.stdout)[preset];
  if (!py) return [`tools/bench_torch.py has no preset ${preset}`];
  const diffs = [];
  for (const [key, value] of Object.entries(py)) {
    if (!sameJson(ts[key], value)) diffs.push(`${key}: torch ${JSON.stringify(value)}, tsdpo ${JSON.stringify(ts[key])}`);
  }
  // A key the Python preset leaves out must have, on tsdpo's side, the value the Python model assumes for it (or be
  // absent there too); maxSeqLen is not used by either benchmark.
  const assumed = {
    ropeScaling: { type: "none" }, slidingWindow: null, norms: "pre", normOffset: 0, activation: "silu", embedScale: 1,
    attnScale: 1 / Math.sqrt(ts.HS), attnSoftcap: 0, finalSoftcap: 0, qkNormScope: "head", residualScale: 1, logitScale: 1,
    normKind: "rms", positions: "rope", mlp: "gated", linearBiases: false,
  };
  for (const [key, value] of Object.entries(assumed)) {
    if (!(key in py) && ts[key] !== undefined && !sameJson(ts[key], value)) {
      diffs.push(`${key}: absent from the Python preset, which assumes ${JSON.stringify(value)}; tsdpo ${JSON.stringify(ts[key])}`);
    }
  }
  if (!("layers" in py) && ts.layers !== undefined) diffs.push("layers: absent from the Python preset; tsdpo has per-layer attention");
  // the Python model implements linear RoPE scaling (and none), not llama3
  for (const s of [ts.ropeScaling, ...(ts.layers ?? []).map((a) => a.ropeScaling)]) {
    if (s && s.type !== "none" && s.type !== "linear") diffs.push(`ropeScaling ${JSON.stringify(s)} is not implemented in Python`);
  }
  return diffs;
}

function summarize(side, runs) {
  return {
    ms_per_step: median(runs.map((r) => r.ms_per_step)),
    rounds_ms_per_step: runs.map((r) => r.ms_per_step),
    share: Object.fromEntries(PARTS.map((p) => [p, mean(runs.map((r) => r.share?.[p] ?? NaN))])),
    peak_rss_mb: Math.max(...runs.map((r) => r.peak_rss_mb)),
    gemm_gflops: runs.every((r) => typeof r.gemm_gflops === "number") ? median(runs.map((r) => r.gemm_gflops)) : null,
    fma_peak_gflops: runs.every((r) => typeof r.fma_peak_gflops === "number") ? median(runs.map((r) => r.fma_peak_gflops)) : null,
    check: runs[0].check,
    env: runs[0].env ?? null,
    backend: runs[0].backend ?? null, // tsdpo's backend name (js or native); absent on the PyTorch side
    config: runs[0].config ?? null,
    side,
  };
}

function relDiff(a, b) {
  return Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-30);
}

function crossCheck(torch, tsdpo) {
  const rows = ["chosen_logps", "rejected_logps"].map((key) => {
    const a = torch.check?.[key];
    const b = tsdpo.check?.[key];
    const ok = Number.isFinite(a) && Number.isFinite(b) && relDiff(a, b) <= LOGPS_REL_TOL;
    return { key, torch: a ?? null, tsdpo: b ?? null, rel_diff: Number.isFinite(a) && Number.isFinite(b) ? relDiff(a, b) : null, ok };
  });
  return { tolerance_rel: LOGPS_REL_TOL, rows, loss: { torch: torch.check?.loss ?? null, tsdpo: tsdpo.check?.loss ?? null }, ok: rows.every((r) => r.ok) };
}

function targets(preset, torch, tsdpo) {
  const speedRatio = torch.ms_per_step / tsdpo.ms_per_step;
  const want = SPEED_TARGETS[preset] ?? null;
  const gemmOk = tsdpo.gemm_gflops !== null && tsdpo.fma_peak_gflops !== null ? tsdpo.gemm_gflops >= GEMM_SHARE_OF_PEAK * tsdpo.fma_peak_gflops : null;
  return {
    speed: { ratio: speedRatio, want_at_least: want, met: want === null ? null : speedRatio >= want },
    rss: { ratio_tsdpo_over_torch: tsdpo.peak_rss_mb / torch.peak_rss_mb, met: tsdpo.peak_rss_mb <= torch.peak_rss_mb },
    gemm: {
      tsdpo_gemm_gflops: tsdpo.gemm_gflops,
      fma_peak_gflops: tsdpo.fma_peak_gflops,
      share_of_peak: gemmOk === null ? null : tsdpo.gemm_gflops / tsdpo.fma_peak_gflops,
      want_at_least: GEMM_SHARE_OF_PEAK,
      met: gemmOk,
    },
  };
}

function gitCommit(dir = ROOT) {
  const r = spawnSync("git", ["rev-parse", "HEAD"], { cwd: dir, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

function printReport(report) {
  const { config: c, torch, tsdpo, targets: t, cross_check: x, environment: e } = report;
  const fmt = (v, d = 1) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : "—");
  const pct = (v) => (typeof v === "number" && Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : "—");
  const verdict = (m) => (m === null ? "no target / not reported" : m ? "met" : "NOT met");
  const tokens = 2 * c.pairs * (c.prompt_len + c.completion_len);
  console.log(`DPO step, ${c.preset}: ${2 * c.pairs} rows × (${c.prompt_len} + ${c.completion_len}) tokens, ${c.threads} ` +
    `threads, ${c.steps} timed steps per run, ${c.rounds} round(s) of PyTorch then tsdpo`);
  const rows = [
    ["", `PyTorch ${torch.env?.torch_version ?? ""}`, "tsdpo"],
    ["ms/step (median of round medians)", fmt(torch.ms_per_step), fmt(tsdpo.ms_per_step)],
    ["  each round's median", torch.rounds_ms_per_step.map((v) => fmt(v)).join(", "), tsdpo.rounds_ms_per_step.map((v) => fmt(v)).join(", ")],
    ["tokens/s", fmt((tokens * 1000) / torch.ms_per_step, 0), fmt((tokens * 1000) / tsdpo.ms_per_step, 0)],
    ...PARTS.map((p) => [`share ${p} (mean over rounds)`, pct(torch.share[p]), pct(tsdpo.share[p])]),
    ["peak RSS MB (largest round)", fmt(torch.peak_rss_mb, 0), fmt(tsdpo.peak_rss_mb, 0)],
    ["GEMM GFLOP/s (median)", fmt(torch.gemm_gflops), fmt(tsdpo.gemm_gflops)],
    ["FMA peak GFLOP/s", "—", fmt(tsdpo.fma_peak_gflops)],
    ["backend", "PyTorch fp32, CPU", tsdpo.backend ?? "?"],
    ["prompt shared by chosen and rejected", "no", tsdpo.config?.shared_prefix === undefined ? "?" : tsdpo.config.shared_prefix ? "yes" : "no"],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  for (const r of rows) console.log(`  ${r[0].padEnd(w0)}  ${r[1].padStart(w1)}  ${r[2]}`);
  console.log(`speed torch_ms / tsdpo_ms = ${fmt(t.speed.ratio, 2)}×` +
    (t.speed.want_at_least === null ? " (no target for this preset)" : `, target ≥ ${t.speed.want_at_least}×: ${verdict(t.speed.met)}`));
  console.log(`peak RSS tsdpo / torch = ${fmt(t.rss.ratio_tsdpo_over_torch, 2)}, target ≤ 1: ${verdict(t.rss.met)}`);
  console.log(`tsdpo GEMM / FMA peak = ${t.gemm.share_of_peak === null ? "—" : fmt(t.gemm.share_of_peak, 2)}, ` +
    `target ≥ ${GEMM_SHARE_OF_PEAK}: ${verdict(t.gemm.met)}`);
  console.log(`cross-check of the first step's policy log-probs (relative tolerance ${x.tolerance_rel}): ${x.ok ? "agree" : "DISAGREE"}`);
  for (const r of x.rows) console.log(`  ${r.key.padEnd(15)} torch ${fmt(r.torch, 6)}  tsdpo ${fmt(r.tsdpo, 6)}  relative difference ${r.rel_diff === null ? "—" : r.rel_diff.toExponential(2)}`);
  console.log(`  loss            torch ${fmt(x.loss.torch, 6)}  tsdpo ${fmt(x.loss.tsdpo, 6)}`);
  console.log(`environment: ${e.cpu} (${e.cpus} cpus), node ${e.node}, ${e.date}, commit ${e.git_commit ?? "?"}, load average ` +
    `before ${e.loadavg_before.map((v) => v.toFixed(2)).join(" ")}, after ${e.loadavg_after.map((v) => v.toFixed(2)).join(" ")}`);
  const te = torch.env ?? {};
  console.log(`  PyTorch: ${te.torch_num_threads} threads, BLAS ${(te.blas_mapped ?? []).join(", ") || "?"}, ` +
    `OMP_NUM_THREADS=${te.OMP_NUM_THREADS}, OPENBLAS_CORETYPE=${te.OPENBLAS_CORETYPE ?? "(unset)"}, LD_LIBRARY_PATH=${te.LD_LIBRARY_PATH}`);
  console.log(`  tsdpo: ${tsdpo.env ? JSON.stringify(tsdpo.env) : "(its JSON has no env)"}`);
  for (const note of e.notes) console.log(`  note: ${note}`);
  const b = report.baseline;
  if (b) {
    console.log(`baseline: tsdpo (${b.label}) at ${b.dir}, commit ${b.git_commit ?? "?"}: ${fmt(b.ms_per_step)} ms/step ` +
      `(rounds ${b.rounds_ms_per_step.map((v) => fmt(v)).join(", ")}), peak RSS ${fmt(b.peak_rss_mb, 0)} MB, GEMM ` +
      `${fmt(b.gemm_gflops)} GFLOP/s of ${fmt(b.fma_peak_gflops)}`);
    console.log(`  torch_ms / baseline_ms = ${fmt(b.speed_ratio_torch_over_baseline, 2)}×; baseline_ms / tsdpo_ms = ` +
      `${fmt(b.speed_ratio_baseline_over_tsdpo, 3)} (per round: ${b.rounds_ratio_baseline_over_tsdpo.map((v) => fmt(v, 3)).join(", ")})`);
    console.log(`  baseline env: ${b.env ? JSON.stringify(b.env) : "?"}`);
  }
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  if (!existsSync(PYTHON)) fail(`${PYTHON} not found; the PyTorch side needs Debian's python3 with python3-torch`);
  ensureBuilt();
  const diffs = await presetDifferences(o.preset);
  if (diffs.length) fail(`tools/bench_torch.py and src/model/presets.ts disagree on ${o.preset}:\n  ${diffs.join("\n  ")}`);

  const common = ["--preset", o.preset, "--prompt-len", String(o.promptLen), "--completion-len", String(o.completionLen),
    "--pairs", String(o.pairs), "--steps", String(o.steps), "--threads", String(o.threads), "--json"];
  const torchArgs = [TORCH_SCRIPT, ...common, "--warmup", String(o.warmup)];
  const tsdpoArgs = [TSDPO_MAIN, "bench", ...common];
  const baselineMain = o.baseline ? join(o.baseline, "dist", "src", "cli", "main.js") : null;
  if (baselineMain && !existsSync(baselineMain)) fail(`--baseline-tsdpo ${o.baseline}: ${baselineMain} does not exist (build that checkout first)`);
  const baselineArgs = baselineMain ? [baselineMain, "bench", ...common] : null;
  const baselineRuns = [];
  const { env: torchEnv, notes } = torchEnvironment(o.threads);
  const loadBefore = loadavg();
  if (loadBefore[0] > 0.5) say(`bench-torch: load average ${loadBefore[0].toFixed(2)} — timings on a busy machine mean little`);

  const torchRuns = [];
  const tsdpoRuns = [];
  for (let round = 1; round <= o.rounds; round++) {
    say(`round ${round}/${o.rounds}: PyTorch …`);
    torchRuns.push(runJson("PyTorch", PYTHON, torchArgs, torchEnv));
    say(`round ${round}/${o.rounds}: PyTorch ${torchRuns.at(-1).ms_per_step.toFixed(1)} ms/step; tsdpo …`);
    tsdpoRuns.push(runJson("tsdpo", process.execPath, tsdpoArgs, process.env));
    say(`round ${round}/${o.rounds}: tsdpo ${tsdpoRuns.at(-1).ms_per_step.toFixed(1)} ms/step`);
    if (baselineArgs) {
      baselineRuns.push(runJson(`tsdpo (${o.baselineLabel})`, process.execPath, baselineArgs, process.env));
      say(`round ${round}/${o.rounds}: tsdpo (${o.baselineLabel}) ${baselineRuns.at(-1).ms_per_step.toFixed(1)} ms/step`);
    }
  }
  const mapped = torchRuns[0].env?.blas_mapped ?? [];
  if (!notes.length && !mapped.some((p) => p.startsWith(OPENBLAS_OPENMP_DIR)))
    notes.push(`PyTorch did not map the OpenMP OpenBLAS despite LD_LIBRARY_PATH; it mapped ${mapped.join(", ") || "no BLAS"}`);

  const torch = summarize("torch", torchRuns);
  const tsdpo = summarize("tsdpo", tsdpoRuns);
  const baseline = baselineArgs ? summarize("tsdpo_baseline", baselineRuns) : null;
  const report = {
    config: { preset: o.preset, prompt_len: o.promptLen, completion_len: o.completionLen, pairs: o.pairs, steps: o.steps,
      torch_warmup: o.warmup, threads: o.threads, rounds: o.rounds, order: "per round: PyTorch, then tsdpo",
      medians: "ms_per_step = median over rounds of each run's ms_per_step (a median over its timed steps); share = mean over rounds; peak_rss_mb = largest over rounds; gemm = median over rounds" },
    torch,
    tsdpo,
    speed_ratio_torch_over_tsdpo: torch.ms_per_step / tsdpo.ms_per_step,
    baseline: baseline && {
      label: o.baselineLabel, dir: o.baseline, git_commit: gitCommit(o.baseline), ...baseline,
      speed_ratio_torch_over_baseline: torch.ms_per_step / baseline.ms_per_step,
      speed_ratio_baseline_over_tsdpo: baseline.ms_per_step / tsdpo.ms_per_step,
      // paired per round: the baseline's step time over this build's, both measured in the same round
      rounds_ratio_baseline_over_tsdpo: baselineRuns.map((b, i) => b.ms_per_step / tsdpoRuns[i].ms_per_step),
    },
    rss_ratio_tsdpo_over_torch: tsdpo.peak_rss_mb / torch.peak_rss_mb,
    targets: targets(o.preset, torch, tsdpo),
    cross_check: crossCheck(torch, tsdpo),
    runs: { torch: torchRuns, tsdpo: tsdpoRuns, ...(baselineArgs ? { baseline: baselineRuns } : {}) },
    commands: { torch: `${PYTHON} ${torchArgs.join(" ")}`, tsdpo: `${process.execPath} ${tsdpoArgs.join(" ")}`,
      ...(baselineArgs ? { baseline: `${process.execPath} ${baselineArgs.join(" ")}` } : {}) },
    environment: {
      node: process.version, cpu: cpus()[0]?.model ?? "unknown", cpus: availableParallelism(), kernel: release(),
      date: new Date().toISOString(), git_commit: gitCommit(), loadavg_before: loadBefore, loadavg_after: loadavg(),
      torch_env: { OMP_NUM_THREADS: torchEnv.OMP_NUM_THREADS, LD_LIBRARY_PATH: torchEnv.LD_LIBRARY_PATH ?? null, OPENBLAS_CORETYPE: null },
      notes,
    },
  };

  if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else printReport(report);
  if (o.out) {
    const tmp = `${o.out}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, JSON.stringify(report, null, 2) + "\n");
      renameSync(tmp, o.out); // atomic on one file system: readers see the old file or the whole new one
    } catch (e) {
      if (existsSync(tmp)) unlinkSync(tmp);
      fail(`could not write ${o.out}: ${e.message}`);
    }
    say(`bench-torch: wrote ${o.out}`);
  }
  if (!report.cross_check.ok) fail("the two sides' first-step log-probs disagree, so their timings are not of the same work");
}

await main();
