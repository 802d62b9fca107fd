// A model's matrices re-encoded in a GGML block format, for frozen uses: the reference model in less memory
// (ref_dtype), and the bench's quantised bases. Rows that the blocks do not tile take llama.cpp's fallbacks (a
// K-quant gives way to Q5_0 or Q8_0; anything to float32 when rows are not a multiple of 32). Norms stay float32.

import { BLOCK, type QuantType, quantizeRow, rowBytes } from "../quant/ggml.js";
import { isBlockMatrix } from "./config.js";
import { type Model, createModel } from "./decoder.js";
import { type QuantWeight, quantWeight } from "./weights.js";

const FALLBACK: Partial<Record<QuantType, QuantType>> = { Q4_K: "Q5_0", Q5_K: "Q5_1", Q6_K: "Q8_0" };

/** The block type a (rows, cols) matrix gets for `want`, or null to keep it in float32. */
export function typeForRows(want: QuantType, cols: number): QuantType | null {
  if (cols % BLOCK[want].elems === 0) return want;
  const next = FALLBACK[want];
  return next && cols % BLOCK[next].elems === 0 ? next : null;
}

/** A frozen copy of `model` with its matrices in `want` blocks (the float32 original is left as it was). */
export function quantisedCopy(model: Model, want: QuantType): Model {
  if (model.quant.size > 0) throw new Error("internal: the model is already quantised");
  const quant = new Map<string, QuantWeight>();
  for (const e of model.entries) {
    if (!isBlockMatrix(e.name, e.shape)) continue;
    const [rows, cols] = e.shape as [number, number];
    const type = typeForRows(want, cols);
    if (!type) continue;
    const rb = rowBytes(type, cols);
    const bytes = new Uint8Array(rows * rb);
    const src = model.params.subarray(e.offset, e.offset + e.size) as Float32Array;
    for (let r = 0; r < rows; r++) quantizeRow(type, src, r * cols, cols, bytes, r * rb);
    quant.set(e.name, quantWeight(type, bytes, rows, cols));
  }
  const copy = createModel(model.cfg, Float32Array, quant);
  const byName = new Map(model.entries.map((e) => [e.name, e]));
  for (const e of copy.entries) {
    const src = byName.get(e.name)!;
    copy.params.set(model.params.subarray(src.offset, src.offset + src.size), e.offset);
  }
  return copy;
}
