#!/usr/bin/env node
// README's quantised-GGUF table: for stories260K and the "wide" random model (test/quant-models.ts), tsdpo's own
// Q8_0 / Q4_K_M / Q6_K export is compared with llama.cpp's quantiser on the same weights (every tensor's type and
// bytes, from test/fixtures/quant/llamacpp-quantized.json), and tsdpo's logits on those blocks with llama.cpp's
// (max |Δlogit| over one text; llama.cpp rounds activations to 8 bits for its quantised dot products).
//
//   node bench/quant-llamacpp.mjs [--backend native] [--out bench/results/quant-llamacpp.json]

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { environment, option, report, root, round } from "./common.mjs";

const d = (p) => import(join(root, "dist", p));
const { exportGguf } = await d("src/export/gguf.js");
const { loadModel } = await d("src/io/load.js");
const { selectBackend } = await d("src/backend/select.js");
const { logitsAgainstLlamaCpp, storiesPath, tensorDigests, wideModel } = await d("test/quant-models.js");

const be = selectBackend(option("backend", "native"));
const ref = JSON.parse(readFileSync(join(root, "test", "fixtures", "quant", "llamacpp-quantized.json"), "utf8"));
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-quant-bench-"));
const result = { command: "node bench/quant-llamacpp.mjs", backend: be.name, ...environment(), reference: "node-llama-cpp 3.22.1 (llama_model_quantize, CPU backend)", models: {} };
try {
  for (const [name, make] of [["stories260K", () => loadModel(storiesPath)], ["wide", wideModel]]) {
    result.models[name] = {};
    for (const dtype of ["Q8_0", "Q4_K_M", "Q6_K"]) {
      const want = ref.models[name][dtype];
      const path = join(tmp, `${name}-${dtype}.gguf`);
      exportGguf(make(), path, { dtype });
      const mine = new Map(tensorDigests(path).map((t) => [t.name, t]));
      const sameTypes = want.tensors.every((t) => mine.get(t.name)?.type === t.type);
      const sameBytes = want.tensors.every((t) => mine.get(t.name)?.sha256 === t.sha256);
      const types = {};
      for (const t of want.tensors) types[t.type] = (types[t.type] ?? 0) + 1;
      const q = loadModel(path);
      const { worst, maxLogit } = logitsAgainstLlamaCpp(be, q.model, want.texts);
      result.models[name][dtype] = { tensor_types: types, same_types_as_llama_cpp: sameTypes, same_bytes_as_llama_cpp: sameBytes, max_abs_logit_diff: round(worst, 4), max_abs_logit: round(maxLogit, 2) };
      process.stderr.write(`${name} ${dtype}: types ${sameTypes}, bytes ${sameBytes}, max |Δlogit| ${worst.toFixed(4)}\n`);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
report(result, option("out", null));
