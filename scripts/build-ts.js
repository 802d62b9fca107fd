#!/usr/bin/env node
// Compiles the TypeScript (tsc -p .) into a fresh dist/ and marks the CLI entry point executable. npm's `prepare`,
// `build`, `test` and `test:slow` all compile through here: the package's bin (node_modules/.bin/tsdpo, `npx tsdpo`)
// is a link to dist/src/cli/main.js, and a file that tsc writes anew has no run bit, so a plain `rm -rf dist && tsc`
// after `npm ci` left `npx tsdpo` failing with "Permission denied".
//
//   node scripts/build-ts.js

import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const tscBin = join(root, "node_modules", ".bin", process.platform === "win32" ? "tsc.cmd" : "tsc");

// Stale compiled files (a renamed or deleted test) must not survive into the suite.
rmSync(dist, { recursive: true, force: true });
const r = spawnSync(existsSync(tscBin) ? tscBin : "tsc", ["-p", root], { stdio: "inherit", cwd: root });
if (r.error) {
  process.stderr.write(`build-ts: could not run tsc (${r.error.message}); run npm ci first\n`);
  process.exit(1);
}
if (r.status !== 0) process.exit(r.status ?? 1);
chmodSync(join(dist, "src", "cli", "main.js"), 0o755);
