// The families whose Hugging Face tensors do not map one to one onto tsdpo's parameters (fused or transposed
// projections): their loader and exporter go through a layout that splits and joins (io/gpt2.ts, io/phi3.ts).
// Every other family is a renaming (io/names.ts).

import type { Buf } from "../backend/contract.js";
import type { LlamaConfig } from "../model/config.js";
import { gpt2FromHf, gpt2HfSpecs, gpt2ToHf } from "./gpt2.js";
import { phi3FromHf, phi3HfSpecs, phi3ToHf } from "./phi3.js";

export interface HfLayout {
  /** The HF tensors, with shapes, in state-dict order. */
  specs: (cfg: LlamaConfig) => { name: string; shape: number[] }[];
  /** tsdpo's parameters (by tsdpo name) from the HF tensors (`get` by HF name). */
  fromHf: (cfg: LlamaConfig, get: (hfName: string) => Buf) => Map<string, Buf>;
  /** The HF tensors (by HF name) from tsdpo's parameters (`get` by tsdpo name). */
  toHf: (cfg: LlamaConfig, get: (name: string) => Buf) => Map<string, Buf>;
}

/** The fused layout of `cfg`'s family, or null when its tensors are renamed one to one. */
export function fusedHfLayout(cfg: LlamaConfig): HfLayout | null {
  switch (cfg.family) {
    case "gpt2":
      return { specs: gpt2HfSpecs, fromHf: gpt2FromHf, toHf: gpt2ToHf };
    case "phi3":
      return { specs: phi3HfSpecs, fromHf: phi3FromHf, toHf: phi3ToHf };
    default:
      return null;
  }
}
