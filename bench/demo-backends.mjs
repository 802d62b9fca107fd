#!/usr/bin/env node
// How long `tsdpo demo` (README's main job, default sizes) takes on each backend, on this machine, in one run: the
// native backend, then the js backend, each in its own process and its own empty folder. The ratio is what the
// one-line fallback notice quotes (src/backend/select.ts JS_BACKEND_COST, scripts/build-native.js), and README quotes
// both timings; test/readme-numbers.test.ts checks them against the committed output.
//
//   node bench/demo-backends.mjs [--out bench/results/demo-backends.json]

import { spawnSync } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const main = join(root, "dist", "src", "cli", "main.js");
const outIdx = process.argv.indexOf("--out");
const out = outIdx > 0 ? resolve(process.argv[outIdx + 1]) : null;

function run(backend) {
  const dir = mkdtempSync(join(tmpdir(), `tsdpo-demo-${backend}-`));
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [main, "demo", "--out", dir, "--backend", backend], { encoding: "utf8" });
  const seconds = (performance.now() - t0) / 1000;
  rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`demo on ${backend} failed (${r.status}): ${r.stderr}`);
  const summary = r.stdout.trim().split("\n").slice(-12).join("\n");
  process.stderr.write(`${backend}: ${seconds.toFixed(1)} s\n`);
  return { seconds: Math.round(seconds * 10) / 10, summary };
}

const git = spawnSync("git", ["rev-parse", "HEAD"], { cwd: root, encoding: "utf8" }).stdout.trim();
const loadBefore = loadavg();
const native = run("native");
const js = run("js");
const result = {
  command: "tsdpo demo (default sizes), once per backend, native first",
  cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, node: process.version, date: new Date().toISOString(),
  git_commit: git, loadavg_before: loadBefore, loadavg_after: loadavg(),
  native_seconds: native.seconds, js_seconds: js.seconds,
  js_over_native: Math.round((js.seconds / native.seconds) * 10) / 10,
  native_summary: native.summary, js_summary: js.summary,
};
const text = JSON.stringify(result, null, 2) + "\n";
if (out) {
  writeFileSync(`${out}.tmp`, text);
  renameSync(`${out}.tmp`, out);
}
process.stdout.write(text);
