// tsdpo's quantised GGUF export and its forward on quantised blocks, against llama.cpp itself
// (test/fixtures/quant/llamacpp-quantized.json, written by tools/llama-ref/gen-quantized.mjs with the
// llama_model_quantize and the CPU backend that node-llama-cpp 3.22.1 ships):
//   - for stories260K (whose widths need llama.cpp's fallback types) and a random "wide" model (widths multiples of
//     256, so K-quants are used), exported by tsdpo as Q8_0, Q4_K_M and Q6_K, every tensor has llama.cpp's type
//     and exactly llama.cpp's bytes (the same type choices, and quantisers equal to ggml's reference ones);
//   - tsdpo's logits on those blocks are within a measured tolerance of llama.cpp's, which also quantises the
//     activations (to Q8_0/Q8_K) for its dot products, and greedy ids agree wherever llama.cpp's top-2 margin is
//     wider than that tolerance.

import { after, test } from "node:test";
import assert from "node:assert/strict";

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportGguf } from "../src/export/gguf.js";

import { type LoadedModel, loadModel } from "../src/io/load.js";
import { generate } from "../src/sample/generate.js";
import { fixture, testBackend } from "./helpers.js";
import { LLAMACPP_TOLERANCE, logitsAgainstLlamaCpp, storiesPath, tensorDigests, wideModel } from "./quant-models.js";

interface Fixture {
  texts: string[];
  models: Record<string, Record<string, {
    tensors: { name: string; type: string; sha256: string }[];
    texts: { ids: number[]; logits_f32_base64: string }[];
    greedy: { ids: number[]; margins: number[] };
  }>>;
}
const ref = JSON.parse(readFileSync(fixture("quant", "llamacpp-quantized.json"), "utf8")) as Fixture;
const be = testBackend();
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-quant-llamacpp-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

// The allowed |Δlogit| per model and type is LLAMACPP_TOLERANCE (test/quant-models.ts, with how it was measured).
const models: Record<string, () => LoadedModel> = { stories260K: () => loadModel(storiesPath), wide: wideModel };
const measured: Record<string, number> = {};

for (const [modelName, make] of Object.entries(models))
  for (const dtype of ["Q8_0", "Q4_K_M", "Q6_K"] as const) {
    test(`${modelName} ${dtype}: tsdpo's export has llama.cpp's tensor types and bytes, and its logits`, () => {
      const want = ref.models[modelName]![dtype]!;
      const path = join(tmp, `${modelName}-${dtype}.gguf`);
      exportGguf(make(), path, { dtype });
      const got = tensorDigests(path);
      const byName = <T extends { name: string }>(xs: T[]): T[] => [...xs].sort((a, b) => a.name.localeCompare(b.name));
      assert.deepEqual(byName(got).map((t) => `${t.name} ${t.type}`), byName(want.tensors).map((t) => `${t.name} ${t.type}`), "tensor types");
      assert.deepEqual(byName(got), byName(want.tensors), "tensor bytes");

      // the blocks are llama.cpp's own, so the forward can be compared with llama.cpp's on them
      const q = loadModel(path);
      assert.ok(q.model.quant.size > 0);
      const { worst } = logitsAgainstLlamaCpp(be, q.model, want.texts);
      measured[`${modelName} ${dtype}`] = worst;
      const tol = LLAMACPP_TOLERANCE[`${modelName} ${dtype}`]!;
      assert.ok(worst <= tol, `max |Δlogit| ${worst} > ${tol}`);
      // greedy ids agree wherever llama.cpp's own margin is wider than the tolerance
      const g = generate(be, q.model, [want.greedy.ids[0]!], [], { maxNewTokens: want.greedy.margins.length, temperature: 0, topK: 0, topP: 1, seed: 0 });
      for (let i = 0; i < want.greedy.margins.length; i++) {
        if (want.greedy.margins[i]! <= 2 * tol) break; // a near tie: the paths may part here
        assert.equal(g.ids[i], want.greedy.ids[i + 1], `greedy token ${i} (llama.cpp margin ${want.greedy.margins[i]})`);
      }
    });
  }

test("the measured |Δlogit| against llama.cpp (printed for README)", () => {
  console.log(JSON.stringify(measured));
  assert.ok(Object.keys(measured).length === 6);
});
