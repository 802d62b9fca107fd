#!/usr/bin/env node
// Builds the native CPU backend (binding.gyp → build/Release/tsdpo_native.node) with node-gyp. It is the package's
// `install` script, so it runs during `npm ci`, and it must never fail the install: without the addon tsdpo runs on
// its TypeScript backend. On failure it prints the tail of the compiler output, writes the reason to
// build/native-unavailable.txt (src/backend/native/index.ts shows it when the backend is chosen) and exits 0.
//
//   node scripts/build-native.js            the install step (never fails)
//   node scripts/build-native.js --strict   `npm run build:native`: exits 1 when the build fails
//   TSDPO_SKIP_NATIVE=1                     skip the build (tsdpo then says so when it picks the js backend)

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buildDir = join(root, "build");
const statusFile = join(buildDir, "native-unavailable.txt");
const strict = process.argv.includes("--strict");

function unavailable(reason, log = "") {
  if (log) process.stderr.write(log.split("\n").slice(-25).join("\n") + "\n");
  process.stderr.write(`tsdpo: native backend not built: ${reason}. tsdpo will use its TypeScript backend.\n`);
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(statusFile, reason + "\n");
  process.exit(strict ? 1 : 0);
}

// npm hands lifecycle scripts its bundled node-gyp in npm_config_node_gyp; outside npm, look next to this node.
function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const prefix = dirname(dirname(process.execPath));
  for (const p of [
    join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    join(prefix, "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ])
    if (existsSync(p)) return [process.execPath, p];
  return ["node-gyp"];
}

// Node's own headers, when this node was installed with them (official tarballs, distro packages): node-gyp
// otherwise downloads them, which fails offline.
function localNodeDir() {
  const prefix = dirname(dirname(process.execPath));
  try {
    const h = readFileSync(join(prefix, "include", "node", "node_version.h"), "utf8");
    const v = ["MAJOR", "MINOR", "PATCH"].map((k) => new RegExp(`#define NODE_${k}_VERSION (\\d+)`).exec(h)?.[1]);
    if (`v${v.join(".")}` === process.version && existsSync(join(prefix, "include", "node", "node_api.h"))) return prefix;
  } catch {
    // no local headers: let node-gyp fetch them
  }
  return null;
}

if (process.env.TSDPO_SKIP_NATIVE === "1") unavailable("skipped because TSDPO_SKIP_NATIVE=1");

const [cmd, ...pre] = nodeGypCommand();
const nodedir = localNodeDir();
const args = [...pre, "rebuild", "--jobs=max", ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const started = Date.now();
const r = spawnSync(cmd, args, { cwd: root, encoding: "utf8", env: { ...process.env } });
const log = `${r.stdout ?? ""}${r.stderr ?? ""}`;
if (r.error) unavailable(`could not run node-gyp (${r.error.message})`);
if (r.status !== 0) {
  const lines = log.split("\n");
  const why =
    lines.find((l) => l.startsWith("tsdpo native build:"))?.replace("tsdpo native build: ", "") ??
    lines.find((l) => /fatal error|cannot find -l|undefined reference|\berror:/.test(l) && !/^(collect2|make|gyp)\b/.test(l))?.trim() ??
    lines.find((l) => /\berror\b/i.test(l) && !/^(make|gyp)\b/.test(l))?.trim() ??
    lines.find((l) => l.startsWith("gyp ERR! stack Error: "))?.replace("gyp ERR! stack Error: ", "node-gyp: ") ??
    `node-gyp exited with status ${r.status}`;
  unavailable(why, log);
}
rmSync(statusFile, { force: true });
process.stderr.write(`tsdpo: native backend built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
