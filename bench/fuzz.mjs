#!/usr/bin/env node
// The long fuzz run behind README's robustness figures: 10,000 seeded cases per reader (GGUF, safetensors, an HF
// model folder, Parquet, JSON/JSON Lines, tokenizer.json, chat templates), each in a worker with a 2 s limit and an
// allocation check (test/fuzz/harness.ts). The suite runs a fixed 500-case slice of each (test/fuzz.test.ts).
// Per reader: cases, TsdpoErrors (clean refusals), accepted inputs, failures (must be 0), seconds. A failing case is
// written to bench/results/fuzz-failures/<reader>-<index>/ so it can become a regression fixture.
//
//   node scripts/build-ts.js && node bench/fuzz.mjs [--cases 10000] [--seed 1] [--readers gguf,json]
//     [--out bench/results/fuzz.json]

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { environment, option, report, root } from "./common.mjs";

const { fuzzTarget, failingInput } = await import(join(root, "dist", "test", "fuzz", "harness.js"));
const { TARGETS } = await import(join(root, "dist", "test", "fuzz", "targets.js"));

const cases = Number(option("cases", "10000"));
const seed = Number(option("seed", "1"));
const readers = option("readers", TARGETS.map((t) => t.name).join(",")).split(",");
const out = option("out", join(root, "bench", "results", "fuzz.json"));

const result = {
  command: `node bench/fuzz.mjs --cases ${cases} --seed ${seed}`,
  ...environment(),
  cases_per_reader: cases,
  seed,
  time_limit_ms: 2000,
  allocation_limit: "max(64 MiB, 16 x input bytes), largest single allocation and total",
  readers: {},
  failures: [],
};
for (const name of readers) {
  const t0 = performance.now();
  const s = await fuzzTarget(name, {
    seed,
    cases,
    onProgress: (done, st) => {
      if (done % 1000 === 0)
        process.stderr.write(`${name}: ${done}/${cases} (${st.failures.length} failures, ${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
    },
  });
  result.readers[name] = {
    cases: s.cases,
    tsdpo_errors: s.tsdpoErrors,
    accepted: s.accepted,
    failures: s.failures.length,
    seconds: Math.round(s.seconds * 10) / 10,
    max_allocation_bytes: s.maxAllocation,
  };
  for (const f of s.failures) {
    result.failures.push(f);
    const dir = join(root, "bench", "results", "fuzz-failures", `${name}-${f.index}`);
    mkdirSync(dir, { recursive: true });
    for (const [file, bytes] of failingInput(name, seed, f.index)) writeFileSync(join(dir, file), bytes);
    writeFileSync(join(dir, "failure.txt"), `${f.key} ${f.kind}\n${f.detail}\n`);
  }
  process.stderr.write(`${name}: ${JSON.stringify(result.readers[name])}\n`);
}
report(result, out);
