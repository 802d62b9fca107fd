#!/usr/bin/env node
// Builds the native CPU backend (binding.gyp → build/Release/tsdpo_native.node) with node-gyp. It is the package's
// `install` script, so it runs during `npm ci`, and it must never fail the install: without the addon tsdpo runs on
// its TypeScript backend. The addon needs only what node-gyp itself needs (Python 3, make and a C++ compiler): its
// matrix products are its own, so no BLAS or other system library is looked for.
//
// On failure it prints one line (what is missing, what running without the addon costs, where the full log is),
// writes the reason to build/native-unavailable.txt (src/backend/native/index.ts shows it when a backend is chosen)
// and the whole compiler output to build/native-build.log, and exits 0.
//
//   node scripts/build-native.js            the install step (never fails)
//   node scripts/build-native.js --strict   `npm run build:native`: exits 1 when the build fails
//   TSDPO_SKIP_NATIVE=1                     skip the build (tsdpo then says so when it picks the js backend)
//   TSDPO_OPENMP=0                          build without OpenMP (the addon's own std::thread pool; see native-config.js)

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buildDir = join(root, "build");
const statusFile = join(buildDir, "native-unavailable.txt");
const logFile = join(buildDir, "native-build.log");
const strict = process.argv.includes("--strict");

// What running without the addon costs, measured: bench/results/demo-backends.json (test/readme-numbers checks it).
const COST = "the demo takes about 7x longer on the js backend";

function unavailable(reason, log = "") {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(statusFile, reason + "\n");
  if (log) writeFileSync(logFile, log);
  const where = log ? `; full log: ${relative(process.cwd(), logFile) || logFile}` : "";
  process.stderr.write(`tsdpo: native backend not built: ${reason}; ${COST}${where}\n`);
  process.exit(strict ? 1 : 0);
}

/** The first of `names` found on PATH, or null. */
function onPath(names) {
  for (const dir of (process.env.PATH ?? "").split(delimiter))
    for (const n of names) if (dir && existsSync(join(dir, n))) return n;
  return null;
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
if (process.platform !== "win32") {
  const cxx = process.env.CXX || onPath(["c++", "g++", "clang++"]);
  if (!cxx) unavailable("no C++ compiler (install g++ or clang++; Debian/Ubuntu: apt-get install g++ make python3)");
  if (!onPath(["make", "gmake"])) unavailable("no make (Debian/Ubuntu: apt-get install make)");
}

const [cmd, ...pre] = nodeGypCommand();
const nodedir = localNodeDir();
const args = [...pre, "rebuild", "--jobs=max", ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const started = Date.now();
const r = spawnSync(cmd, args, { cwd: root, encoding: "utf8", env: { ...process.env } });
const log = `$ ${[cmd, ...args].join(" ")}\n${r.stdout ?? ""}${r.stderr ?? ""}`;
if (r.error) unavailable(`could not run node-gyp (${r.error.message})`, log);
if (r.status !== 0) {
  const lines = log.split("\n");
  const why =
    lines.find((l) => /fatal error|cannot find -l|undefined reference|\berror:/.test(l) && !/^(collect2|make|gyp)\b/.test(l))?.trim() ??
    lines.find((l) => l.startsWith("gyp ERR! stack Error: "))?.replace("gyp ERR! stack Error: ", "node-gyp: ") ??
    lines.find((l) => /\berror\b/i.test(l) && !/^(make|gyp)\b/.test(l))?.trim() ??
    `node-gyp exited with status ${r.status}`;
  unavailable(why, log);
}
rmSync(statusFile, { force: true });
writeFileSync(logFile, log);
process.stderr.write(`tsdpo: native backend built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
