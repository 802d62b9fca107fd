// What the measurement scripts under bench/ share: their options, the commit they measured, rounding, and the
// atomic write of their JSON output (the file README's numbers point at).

import { spawnSync } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const cli = join(root, "dist", "src", "cli", "main.js");

/** The value after --name on the command line, or `fallback`. */
export function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

export const round = (x, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Mean, sample standard deviation and range. */
export function stats(xs) {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  return { mean: round(mean), sd: round(sd), min: round(Math.min(...xs)), max: round(Math.max(...xs)) };
}

/** Where and on what the measurement ran. */
export function environment() {
  return {
    cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, node: process.version, date: new Date().toISOString(),
    git_commit: spawnSync("git", ["rev-parse", "HEAD"], { cwd: root, encoding: "utf8" }).stdout.trim(),
  };
}

/** Writes `result` as JSON to `out`: a temporary name, then a rename, so a killed run leaves the old file whole. */
export function writeResult(result, out) {
  writeFileSync(`${out}.tmp`, JSON.stringify(result, null, 2) + "\n");
  renameSync(`${out}.tmp`, out);
}

/** Prints `result` as JSON, and writes it to `out` when given. */
export function report(result, out) {
  if (out) writeResult(result, out);
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
}
