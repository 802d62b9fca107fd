// Backend selection (src/backend/select.ts): TSDPO_BACKEND is the backend when none is named (a command without
// --backend, a training config without "backend"), a named one wins over it, and a value that is not a backend is a
// config error naming the variable, in the library and through the CLI (exit 2, one error line).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jsBackend } from "../src/backend/js/kernels.js";
import { defaultBackendName, selectBackend } from "../src/backend/select.js";
import { TsdpoError } from "../src/errors.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { repoRoot, storiesGguf } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-select-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs fn with TSDPO_BACKEND set to value (undefined: unset), then puts the variable back. */
function withEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.TSDPO_BACKEND;
  if (value === undefined) delete process.env.TSDPO_BACKEND;
  else process.env.TSDPO_BACKEND = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.TSDPO_BACKEND;
    else process.env.TSDPO_BACKEND = saved;
  }
}

const isEnvError = (value: string) => (e: unknown): boolean =>
  e instanceof TsdpoError && e.kind === "config" && e.message.startsWith(`environment variable TSDPO_BACKEND=${value}: expected js, native or auto`);

test("TSDPO_BACKEND names the default backend; unset or empty is auto; anything else is a config error", () => {
  assert.equal(withEnv(undefined, defaultBackendName), "auto");
  assert.equal(withEnv("", defaultBackendName), "auto");
  for (const name of ["js", "native", "auto"]) assert.equal(withEnv(name, defaultBackendName), name);
  for (const bad of ["JS", "gpu", " js"]) assert.throws(() => withEnv(bad, defaultBackendName), isEnvError(bad), bad);
  assert.throws(() => withEnv("gpu", () => selectBackend()), isEnvError("gpu"));
});

test("selectBackend: no name follows TSDPO_BACKEND, a name wins over it", () => {
  assert.equal(withEnv("js", () => selectBackend()), jsBackend);
  assert.equal(withEnv("js", () => selectBackend(undefined)), jsBackend);
  // an explicit name never reads the variable, even a broken one
  assert.equal(withEnv("gpu", () => selectBackend("js")), jsBackend);
  assert.throws(() => withEnv("js", () => selectBackend("gpu")), /^TsdpoError: --backend gpu: expected js, native or auto$/);
});

test("a training config without \"backend\" takes TSDPO_BACKEND; one that names a backend, even auto, keeps it", () => {
  const cfg = (obj: Record<string, unknown>, env: string | undefined): string => withEnv(env, () => resolveTrainConfig(obj, "test").backend);
  assert.equal(cfg({}, "js"), "js");
  assert.equal(cfg({}, "native"), "native"); // resolving does not load the addon; training would
  assert.equal(cfg({}, undefined), "auto");
  assert.equal(cfg({ backend: "auto" }, "js"), "auto");
  assert.equal(cfg({ backend: "js" }, "native"), "js");
  assert.equal(cfg({ backend: "native" }, "gpu"), "native");
  assert.throws(() => cfg({}, "gpu"), isEnvError("gpu"));
});

test("the CLI: a bad TSDPO_BACKEND is one error line and exit 2; --backend wins over it", () => {
  const cli = join(repoRoot, "dist", "src", "cli", "main.js");
  const data = join(tmp, "pairs.jsonl");
  writeFileSync(data, JSON.stringify({ prompt: "Tom had a ball.", chosen: " He threw it.", rejected: " It ate the sun." }) + "\n");
  const run = (env: string, ...args: string[]) => {
    const e: NodeJS.ProcessEnv = { ...process.env, TSDPO_BACKEND: env };
    delete e["TSDPO_DEBUG"];
    return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: e, timeout: 60_000 });
  };
  const want = "error: environment variable TSDPO_BACKEND=gpu: expected js, native or auto (or unset for auto)\n";
  for (const args of [["logprobs", "--data", data], ["train", `--data=${data}`, `--output_dir=${join(tmp, "run")}`]]) {
    const r = run("gpu", ...args);
    assert.equal(r.status, 2, `${args[0]}: ${r.stderr}`);
    assert.equal(r.stderr, want, args[0]);
    assert.equal(r.stdout, "");
  }
  const ok = run("gpu", "logprobs", "--data", data, "--model", storiesGguf, "--backend", "js");
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stderr, "");
  const row = JSON.parse(ok.stdout) as { chosen_logps: number; rejected_logps: number };
  assert.ok(row.chosen_logps < 0 && row.rejected_logps < 0, ok.stdout);
});
