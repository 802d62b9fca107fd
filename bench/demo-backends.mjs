#!/usr/bin/env node
// How long `tsdpo demo` (README's main job, default sizes) takes on each backend, on this machine, in one run: the
// native backend, then the js backend, each in its own process and its own empty folder. The ratio is what the
// one-line fallback notice quotes (src/backend/select.ts JS_BACKEND_COST, scripts/build-native.js), and README quotes
// both timings; test/readme-numbers.test.ts checks them against the committed output.
//
//   node bench/demo-backends.mjs [--out bench/results/demo-backends.json]

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { cli, environment, option, report, round } from "./common.mjs";

function run(backend) {
  const dir = mkdtempSync(join(tmpdir(), `tsdpo-demo-${backend}-`));
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, "demo", "--out", dir, "--backend", backend], { encoding: "utf8" });
  const seconds = (performance.now() - t0) / 1000;
  rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`demo on ${backend} failed (${r.status}): ${r.stderr}`);
  const summary = r.stdout.trim().split("\n").slice(-12).join("\n");
  process.stderr.write(`${backend}: ${seconds.toFixed(1)} s\n`);
  return { seconds: round(seconds, 1), summary };
}

const loadBefore = loadavg();
const native = run("native");
const js = run("js");
const result = {
  command: "tsdpo demo (default sizes), once per backend, native first",
  ...environment(), loadavg_before: loadBefore, loadavg_after: loadavg(),
  native_seconds: native.seconds, js_seconds: js.seconds,
  js_over_native: round(js.seconds / native.seconds, 1),
  native_summary: native.summary, js_summary: js.summary,
};
report(result, option("out", null));
