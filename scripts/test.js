#!/usr/bin/env node
// The test command behind `npm test`: the built suite (dist/test/) once per backend. First with TSDPO_BACKEND=js (the
// TypeScript kernels, always there), then with TSDPO_BACKEND=native when the native addon loads; without the addon
// it says why and runs the js pass alone. test/helpers.ts reads TSDPO_BACKEND as the backend under test. Exits
// non-zero when either pass fails (both passes run either way, so one report shows both).
//
//   node scripts/test.js                               the whole suite, both passes
//   node scripts/test.js dist/test/train.test.js       one file (any arguments go to `node --test`), both passes
//   node scripts/test.js --test-name-pattern=resume    node's options as --name=value (a separate value would be
//                                                      taken for a file, and the suite would not be added)
//   TSDPO_REQUIRE_NATIVE=1                             fail when the native pass cannot run (CI sets it, so a broken
//                                                      addon cannot hide behind the js fallback)
//
// With the whole suite and a native pass to come, the js pass skips the backend-free files (BACKEND_FREE below):
// their results cannot depend on the backend, and the native pass runs them.
//
// Build first (`tsc -p .`): this runs the compiled tests and loads the compiled backend.

import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

// Arguments go to `node --test` as given; without a file or folder among them, the whole built suite.
const args = process.argv.slice(2);
const wholeSuite = !args.some((a) => !a.startsWith("-"));
const testArgs = wholeSuite ? [...args, join(root, "dist", "test") + "/"] : args;

// Test files whose results cannot depend on the backend under test: they use no kernels (tokenizers, file formats,
// parsers and their fuzzing, losses on plain arrays, the label studio's server), or they compare the js kernels with
// the native ones explicitly whatever the pass. With the whole suite and a native pass to come, the js pass leaves
// them to it, so each runs once.
const BACKEND_FREE = new Set([
  "data-csv", "data-load", "data", "fuzz", "gguf-vocab", "ggufwriter", "io", "label-browser", "label", "loss",
  "readme-numbers", "tokenizer-gemma3", "tokenizer-gpt2", "tokenizer", "kernels", "gemma-kernels", "gpt2-kernels",
].map((n) => `${n}.test.js`));

/** The whole suite's files for `node --test` (as a folder argument would find them), without the backend-free ones. */
function withoutBackendFree() {
  const dir = join(root, "dist", "test");
  const walk = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  const files = walk(dir).filter((f) => f.endsWith(".js") && !BACKEND_FREE.has(f.slice(dir.length + 1)));
  return [...args, ...files.sort()];
}

/**
 * Whether the native backend loads, asked of a separate process (as each test process will load it) through the
 * compiled loader itself, so that TSDPO_NATIVE=0, a missing build and a broken one all count as "no" with the reason.
 */
function nativeStatus() {
  const loader = pathToFileURL(join(root, "dist", "src", "backend", "native", "index.js")).href;
  const probe = `import(${JSON.stringify(loader)}).then((m) => { const n = m.loadNative(); ` +
    `process.stdout.write(n.ok ? "ok" : "no: " + n.reason); }, (e) => process.stdout.write("no: " + e.message))`;
  const r = spawnSync(process.execPath, ["-e", probe], { encoding: "utf8" });
  const out = (r.stdout ?? "").trim();
  if (r.status === 0 && out === "ok") return { ok: true };
  return { ok: false, reason: out.startsWith("no: ") ? out.slice(4) : `the probe exited with ${r.status}: ${(r.stderr ?? "").trim().split("\n")[0]}` };
}

/** One pass of the suite with TSDPO_BACKEND=backend; output goes straight through. */
function pass(backend, files = testArgs) {
  const shown = files === testArgs ? testArgs.join(" ") : `dist/test/ without ${BACKEND_FREE.size} backend-free files, which the native pass runs`;
  process.stdout.write(`\n=== tests on the ${backend} backend (TSDPO_BACKEND=${backend} node --test ${shown}) ===\n`);
  const t0 = performance.now();
  // The js kernels use one core: two test files at a time keep both of a 2-core machine busy. The native pass keeps
  // node's default (cores − 1 files at a time), since its kernels already use every core.
  const concurrency = backend === "js" ? [`--test-concurrency=${Math.max(2, availableParallelism() - 1)}`] : [];
  const r = spawnSync(process.execPath, ["--test", ...concurrency, ...files], { stdio: "inherit", env: { ...process.env, TSDPO_BACKEND: backend } });
  const seconds = (performance.now() - t0) / 1000;
  const ok = r.status === 0;
  const how = ok ? "passed" : r.signal ? `killed by ${r.signal}` : r.error ? `did not start (${r.error.message})` : `failed (exit ${r.status})`;
  return { backend, ok, how, seconds };
}

const native = nativeStatus();
const results = [pass("js", wholeSuite && native.ok ? withoutBackendFree() : testArgs)];
if (native.ok) results.push(pass("native"));
else process.stdout.write(`\n=== no native pass: the native backend is not available (${native.reason}); only the js backend was tested ===\n`);

const summary = results.map((r) => `${r.backend} ${r.how} in ${r.seconds.toFixed(0)} s`).join("; ");
process.stdout.write(`\n=== test summary: ${summary}${native.ok ? "" : "; native not tested"} ===\n`);
if (!native.ok && process.env.TSDPO_REQUIRE_NATIVE === "1") {
  process.stdout.write(`=== failed: TSDPO_REQUIRE_NATIVE=1 and the native pass did not run (${native.reason}) ===\n`);
  process.exit(1);
}
process.exit(results.every((r) => r.ok) ? 0 : 1);
